"""The decoding loops as short functions, after gpt-fast's generate.py (prefill, one step, the loop): a batch's
inputs, the greedy and the sampled choice of a token, the static-cache loop of the compiled engine, and the eager
engine's sampling loop over one shared copy of each prompt's KV cache. generation.Generator holds the model and
its caches and picks among them."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from .prefix_sharing import SharedPrompt, shared_prompt_attention

SAMPLE_TOP_K = 64  # sampling draws from the likeliest tokens only (then top_p): no sort over the whole vocabulary
PREFILL_CHUNK = 64  # the compiled engine reads a prompt this many tokens at a time (left-padded to whole chunks):
                    # one compiled graph for every prompt width
EOS_CHECK = 8  # the compiled engine looks for finished replies every this many tokens (each look syncs the host)

# (fp32 logits of the last position, the tokens each row's repetition penalty sees, the step) -> a token per row
Pick = Callable[[torch.Tensor, torch.Tensor | None, int], torch.Tensor]
# one forward through a static cache: (ids, embeds, positions, mask, cache) -> fp32 logits of the last position
Step = Callable[..., torch.Tensor]


@dataclass
class Draws:
    """How candidates are sampled: temperature, then nucleus `top_p`, from a seeded generator."""
    temperature: float
    top_p: float
    generator: torch.Generator | None = None


def batch_inputs(prompts: list[list[int]], width: int, pad_id: int, device, soft_prompt=None, embed=None):
    """Left-padded ids and attention mask of a batch, and the input embeddings when a soft prompt leads them
    (its positions then also lead the mask); embeddings are None without a soft prompt. `embed`: the model's
    input embedding layer."""
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, p in enumerate(prompts):
        ids[i, width - len(p):] = torch.tensor(p)
        mask[i, width - len(p):] = 1
    ids, mask = ids.to(device), mask.to(device)
    if soft_prompt is None:
        return ids, mask, None
    embeds = embed(ids)
    soft = soft_prompt.to(embeds.dtype).expand(len(prompts), -1, -1)
    ones = torch.ones(len(prompts), soft.shape[1], dtype=mask.dtype, device=mask.device)
    return ids, torch.cat([ones, mask], 1), torch.cat([soft, embeds], dim=1)


def greedy(logits, seen, penalty: float, eos_id: int, hold_eos: bool) -> torch.Tensor:
    """transformers' repetition penalty (a seen token's logit divided by the penalty when positive, times it
    when negative), the end token held back while `hold_eos`, then the greedy choice."""
    if penalty != 1.0:
        logits = torch.where(seen, torch.where(logits < 0, logits * penalty, logits / penalty), logits)
    if hold_eos:
        logits[:, eos_id] = -float("inf")
    return logits.argmax(-1)


def draw(logits: torch.Tensor, d: Draws) -> torch.Tensor:
    """One sampled token per row: at `temperature`, among the SAMPLE_TOP_K likeliest tokens the smallest set whose
    probability reaches `top_p`."""
    top, order = (logits / d.temperature).topk(min(SAMPLE_TOP_K, logits.shape[-1]), dim=-1)
    probs = torch.softmax(top, -1)
    probs = probs.masked_fill(probs.cumsum(-1) - probs >= d.top_p, 0.0)
    return order.gather(1, torch.multinomial(probs, 1, generator=d.generator))[:, 0]


def _chunk(x, lo: int):
    """Columns lo.. of a chunk, copied in standard strides (a slice's strides name the prompt's width, and a
    compiled graph is made per stride)."""
    return None if x is None else x[:, lo: lo + PREFILL_CHUNK].clone(memory_format=torch.contiguous_format)


def prefill(step: Step, ids, embeds, positions, full_mask, cache) -> torch.Tensor:
    """The prompt read into the static cache a chunk of PREFILL_CHUNK tokens at a time (the cache counts the
    tokens it has read); the logits after its last token."""
    for lo in range(0, positions.shape[1], PREFILL_CHUNK):
        logits = step(None if embeds is not None else _chunk(ids, lo), _chunk(embeds, lo), _chunk(positions, lo),
                      full_mask, cache)
    return logits


def decode(step: Step, logits, seen, last, full_mask, cache, max_new_tokens: int, min_new_tokens: int, eos: int,
           pick: Pick) -> torch.Tensor:
    """One token per step through the static cache on fixed shapes, nothing copied to the host but the look for
    finished replies every EOS_CHECK steps; the new token ids (batch, <= max_new_tokens)."""
    out = torch.full((logits.shape[0], max_new_tokens), eos, dtype=torch.long, device=logits.device)
    for t in range(max_new_tokens):
        token = pick(logits, seen, t)
        out[:, t] = token
        if t + 1 == max_new_tokens or (t + 1 >= min_new_tokens and (t + 1) % EOS_CHECK == 0
                                       and bool((out[:, :t + 1] == eos).any(1).all())):
            return out[:, :t + 1]
        seen.scatter_(1, token[:, None], True)
        logits = step(token[:, None], None, last + 1 + t, full_mask, cache)
    return out


def static_decode(step: Step, cache, length: int, ids, embeds, mask, pad_id: int, eos: int, max_new_tokens: int,
                  min_new_tokens: int, pick: Pick) -> torch.Tensor:
    """The compiled engine's loop: the prompt left-padded to whole chunks of PREFILL_CHUNK tokens (`prefill`), then
    `decode`, through a static `cache` `length` tokens long, enough for both. Greedily it decodes what
    transformers' generate() decodes: the same position ids (left padding), repetition penalty (`seen`: over the
    prompt ids, pads included, as transformers does; over the generated ids only behind a soft prompt, whose
    prompt is embeddings) and end-token hold-back."""
    b, prompt_ids = mask.shape[0], ids
    if pad := -mask.shape[1] % PREFILL_CHUNK:  # more left padding, masked out like the batch's own
        mask = torch.nn.functional.pad(mask, (pad, 0))
        ids = torch.nn.functional.pad(ids, (pad, 0), value=pad_id)
        embeds = None if embeds is None else torch.nn.functional.pad(embeds, (0, 0, pad, 0))
    full_mask = torch.cat([mask, mask.new_ones(b, length - mask.shape[1])], dim=1)
    positions = (mask.long().cumsum(-1) - 1).masked_fill(mask == 0, 0)
    logits = prefill(step, ids, embeds, positions, full_mask, cache)
    seen = torch.zeros(logits.shape, dtype=torch.bool, device=logits.device)
    if embeds is None:
        seen.scatter_(1, prompt_ids, True)  # without the chunks' padding, as generate() pads
    last = positions[:, -1:]
    return decode(step, logits, seen, last, full_mask, cache, max_new_tokens, min_new_tokens, eos, pick)


def shared_prefill(model, ids, embeds, mask, n: int):
    """Each prompt read once into a dynamic cache, shared by its `n` candidates (prefix_sharing.py): their first
    logits, the shared prompt, an empty cache for the candidates' own tokens, and each row's last position."""
    from transformers import DynamicCache

    positions = (mask.long().cumsum(-1) - 1).clamp(min=0)
    cache = DynamicCache(config=model.config)
    logits = model(input_ids=ids if embeds is None else None, inputs_embeds=embeds, attention_mask=mask,
                   position_ids=positions, past_key_values=cache, use_cache=True, logits_to_keep=1).logits
    shared = SharedPrompt.from_cache(cache, mask, n)
    own = DynamicCache(config=model.config)
    return logits[:, -1].float().repeat_interleave(n, 0), shared, own, positions[:, -1:].repeat_interleave(n, 0)


def shared_decode(model, logits, shared, own, last, n: int, max_new_tokens: int, eos: int, d: Draws,
                  greedy_rows: Callable | None, seen, log_probs: torch.Tensor | None = None) -> torch.Tensor:
    """The eager engine's sampling loop: a token per row (`draw`; the first row of each prompt's n by
    `greedy_rows(logits, seen)` where given), finished rows leaving the batch at once. Rows of the result start as
    end tokens: a row that ended keeps them after its end. `log_probs` (rows, max_new_tokens), where given, receives
    each chosen token's log-probability under the model (before temperature and nucleus), for the reranker's
    likelihood term (likelihood.mean_log_probs)."""
    rows = shared.rows  # which reply each batch row writes
    tokens = torch.full((len(rows), max_new_tokens), eos, dtype=torch.long, device=logits.device)
    with shared_prompt_attention(model.config):
        for t in range(max_new_tokens):
            token = draw(logits, d)
            if greedy_rows is not None and bool((first := rows % n == 0).any()):
                token[first] = greedy_rows(logits[first], None if seen is None else seen[first])
            if seen is not None:
                seen[torch.arange(len(rows), device=logits.device), token] = True
            tokens[rows, t] = token
            if log_probs is not None:
                log_probs[rows, t] = logits.log_softmax(-1).gather(1, token[:, None])[:, 0]
            done = token == eos
            if bool(done.all()) or t + 1 == max_new_tokens:
                break
            if bool(done.any()):
                keep = (~done).nonzero()[:, 0]
                own.batch_select_indices(keep)
                rows, token, last = rows[keep], token[keep], last[keep]
                seen = None if seen is None else seen[keep]
                shared.rows = rows
            last = last + 1
            logits = model(input_ids=token[:, None], position_ids=last, past_key_values=own, use_cache=True,
                           logits_to_keep=1, shared_prompt=shared).logits[:, -1].float()
    return tokens
