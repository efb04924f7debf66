"""How likely the served model finds each reply after its message's prompt: a term of fit the reranker can weigh
(`evaluate.rerank_likelihood_weight`). A past reply sent to another message earlier can read well and still not fit
this one; the model that reads the prompt tells, where the embeddings of message and reply did not
(benchmarks/results/reply_pool/, the `likelihood` variants).

The texts are read after the prompt's KV cache, all of them packed into one row with no padding: each attends to
the prompt and to its own earlier tokens (a 4-D attention mask), so a pool costs one forward of its members' tokens.
Sampled candidates need no such read: the sampling loop keeps each drawn token's log-probability
(decoding.shared_decode), and `mean_log_probs` averages them."""
from __future__ import annotations

import numpy as np
import torch


@torch.no_grad()
def prompt_cache(model, ids, mask, embeds):
    """One prompt read (`ids`, `mask`, `embeds`: decoding.batch_inputs of it, a soft prompt included): its KV
    cache and the log-probabilities of the token after it."""
    from transformers import DynamicCache

    cache = DynamicCache(config=model.config)
    logits = model(input_ids=ids if embeds is None else None, inputs_embeds=embeds, attention_mask=mask,
                   past_key_values=cache, use_cache=True, logits_to_keep=1).logits
    return cache, logits[0, -1].float().log_softmax(-1)


def cache_of(model, keys: list[torch.Tensor], values: list[torch.Tensor]):
    """A KV cache that holds one prompt's keys and values (per layer, batch 1), e.g. a row of a SharedPrompt's."""
    from transformers import DynamicCache

    cache = DynamicCache(config=model.config)
    for layer, (k, v) in enumerate(zip(keys, values)):
        cache.update(k, v, layer)
    return cache


@torch.no_grad()
def after_prompt(model, tokenizer, cache, prompt_mask: torch.Tensor, first: torch.Tensor, texts: list[str],
                 max_tokens: int) -> np.ndarray:
    """Each text's mean token log-probability (its end token included, at most `max_tokens` tokens) after one prompt
    already read into `cache` (batch 1; `prompt_mask`: its real positions, `first`: the log-probabilities of the
    token after it). The texts are packed into one row: a text's tokens see the prompt and their own text only."""
    if not texts:
        return np.zeros(0)
    eos = tokenizer.eos_token_id
    seqs = [tokenizer(t, add_special_tokens=False)["input_ids"][: max_tokens - 1] + [eos] for t in texts]
    device = prompt_mask.device
    flat = torch.tensor([t for s in seqs for t in s], device=device)[None]
    member = torch.tensor([j for j, s in enumerate(seqs) for _ in s], device=device)
    offset = torch.tensor([i for s in seqs for i in range(len(s))], device=device)
    seen = torch.cat([prompt_mask.bool().reshape(1, -1).expand(len(member), -1),
                      (member[:, None] == member[None, :]) & (offset[None, :] <= offset[:, None])], 1)
    blocked = torch.zeros(seen.shape, dtype=model.dtype, device=device).masked_fill(~seen,
                                                                                    torch.finfo(model.dtype).min)
    positions = (int(prompt_mask.sum()) + offset)[None]  # each text starts where the prompt ends
    logits = model(input_ids=flat, attention_mask=blocked[None, None], position_ids=positions, past_key_values=cache,
                   use_cache=True).logits[0].float()
    steps = logits.log_softmax(-1).gather(-1, flat[0, 1:, None])[:, 0]  # each token given the one before it
    ends = np.cumsum([len(s) for s in seqs])
    return np.array([(float(first[s[0]]) + float(steps[end - len(s): end - 1].sum())) / len(s)
                     for s, end in zip(seqs, ends)])


def likelihoods(model, tokenizer, ids, mask, embeds, texts: list[str], max_tokens: int) -> np.ndarray:
    """`after_prompt` for a prompt not yet read (`ids`, `mask`, `embeds`: decoding.batch_inputs of it)."""
    cache, first = prompt_cache(model, ids, mask, embeds)
    return after_prompt(model, tokenizer, cache, mask[0], first, texts, max_tokens)


def mean_log_probs(token_rows: list[list[int]], log_probs: torch.Tensor, eos: int) -> np.ndarray:
    """Each sampled row's mean token log-probability, its end token included (the whole row where it has none):
    what `after_prompt` gives for the row's text, read from the sampling loop instead."""
    sums = log_probs.float().cumsum(1).cpu().numpy()
    ends = [row.index(eos) + 1 if eos in row else len(row) for row in token_rows]
    return np.array([sums[i, end - 1] / end for i, end in enumerate(ends)])
