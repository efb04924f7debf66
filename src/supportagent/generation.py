"""Deterministic batched reply generation for the base, a LoRA adapter or a soft prompt."""
from __future__ import annotations

import contextlib
import copy
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from . import models
from .prefix_sharing import SharedPrompt, shared_prompt_attention


@dataclass
class Reply:
    text: str
    truncated: bool  # hit the token limit before the end token
    token_ids: list[int]
    alternatives: list[tuple[str, bool]] = field(default_factory=list)  # the other candidates, best-ranked first:
    # (text, truncated), what the guard (guard.py) sends when this reply fails a check


@dataclass
class Rerank:
    """`evaluate.candidates` sampled replies besides the greedy one, and how they are ranked: `rank` takes each
    message's candidate texts and references and returns its candidates' indices best first (reranking.rankings)."""
    candidates: int
    temperature: float
    top_p: float
    seed: int
    rank: Callable[[list[list[str]], list[list[str]]], list[list[int]]]


SAMPLE_ROWS = 512  # replies sampled at once at most (prompts x candidates)
SAMPLE_TOP_K = 64  # sampling draws from the likeliest tokens only (then top_p): no sort over the whole vocabulary
CACHE_BUCKET = 256  # the compiled engine's static KV cache (prompt and reply) is a multiple of this long: its
                    # graphs are compiled per cache length and batch size (`Generator.cache_length`)
PREFILL_CHUNK = 64  # the compiled engine reads a prompt this many tokens at a time (left-padded to whole chunks):
                    # one compiled graph for every prompt width
EOS_CHECK = 8  # the compiled engine looks for finished replies every this many tokens (each look syncs the host)
SAMPLE_GROUP = 8  # the compiled engine samples the candidates of this many messages in one batch (a batch of
                  # requests the server answers together); fewer than this but more than one are padded to it, so
                  # its graphs are compiled for two batch sizes: one message's candidates, and this many messages'


def _pow2(n: int) -> int:
    """`n` rounded up to a power of two: the batch size the compiled engine pads to."""
    return 1 << (n - 1).bit_length()


def resolve_engine(engine: str, device: torch.device, quantized: bool = False) -> str:
    """`auto`: compiled on a GPU, eager elsewhere (on a CPU the static cache, compiled or not, measured slower
    than transformers' dynamic one: benchmarks/results/cpu_serving/). A model that still holds bitsandbytes 4-bit
    layers (`evaluate.fold_qlora: false`, or a fold that ran out of GPU memory) cannot be compiled: on a GPU it
    decodes with the eager engine, with a warning."""
    if engine == "auto":
        engine = "compiled" if device.type == "cuda" else "eager"
    if engine == "compiled" and device.type == "cuda" and quantized:
        warnings.warn("the model holds 4-bit layers, which torch.compile cannot compile: decoding with the eager "
                      "engine (evaluate.fold_qlora: true folds them when the GPU has room)")
        engine = "eager"
    return engine


def _quantized(model) -> bool:
    """Whether a bitsandbytes quantizer is still attached (serving.fold_4bit detaches it after a full fold)."""
    return any(getattr(m, "hf_quantizer", None) is not None for m in model.modules())


class Generator:
    """Greedy decoding with left padding. A soft prompt (prompt tuning) is prepended as input
    embeddings to the frozen base: peft's own generate() degenerates after the first token.

    `engine`: eager (transformers' generate() with its dynamic KV cache) or compiled: this module's own greedy
    loop over a static KV cache (`_static_decode`), whose forwards a GPU compiles with torch.compile and replays
    as CUDA graphs: the prompt's, a chunk of PREFILL_CHUNK tokens at a time, and each decoding step's. It decodes
    the tokens generate() decodes (tests/test_engine.py compares them). Its static cache is sized for the longest
    prompt a caller sends (`max_prompt_tokens`: model.max_prompt_tokens), rounded up to a multiple of
    CACHE_BUCKET (`cache_length`), and batches are padded (copies of the first prompt, whose replies are dropped)
    to the smallest batch size `warm_up` compiled that holds them, else to a power of two, so a process compiles
    two graphs per batch size, whatever the prompts' widths (the first such call pays it: a server's `warm_up`
    compiles one message and its largest batch); on a CPU nothing is compiled.

    `rerank` (evaluate.candidates > 0): each reply is chosen among the greedy reply and sampled candidates, all
    decoded by `sample`, with the model or its copy in `sample_dtype`: the eager engine's loop shares each prompt's
    KV cache among its candidates, the compiled engine's copies it into every candidate's row of the static cache."""

    def __init__(self, model, tokenizer, max_new_tokens: int = 64, repetition_penalty: float = 1.1,
                 engine: str = "eager", rerank: Rerank | None = None, sample_dtype: torch.dtype | None = None,
                 max_prompt_tokens: int | None = None):
        self.tokenizer = tokenizer
        self.max_new_tokens = max_new_tokens
        self.max_prompt_tokens = max_prompt_tokens
        self.repetition_penalty = repetition_penalty
        self.rerank = rerank
        self.soft_prompt = None
        if hasattr(model, "peft_config") and getattr(model, "active_peft_config", None) is not None \
                and model.active_peft_config.is_prompt_learning:
            with torch.no_grad():
                self.soft_prompt = model.get_prompt(batch_size=1).detach()  # (1, n_virtual, hidden)
            model = model.get_base_model()
        self.model = model.eval()
        self.device = next(model.parameters()).device
        # the model candidates are sampled with: a copy in `sample_dtype` where that differs from the model's
        self.sampler = self.model
        if rerank and rerank.candidates and sample_dtype not in (None, next(model.parameters()).dtype):
            self.sampler = _copy_in(self.model, sample_dtype)
        self.engine = resolve_engine(engine, self.device, _quantized(model))
        self._caches, self._compiled = {}, None
        self._warm_batches: set[int] = set()  # the greedy batch sizes `warm_up` compiled
        self._draws = torch.Generator(device=self.device).manual_seed(rerank.seed) if rerank else None
        if self.engine not in ("eager", "compiled"):
            raise ValueError(f"engine {engine!r}: use auto, eager or compiled")

    def reply(self, prompts: list[list[int]], references: list[list[str]] | None = None) -> list[Reply]:
        """The replies sent: greedy ones, or with `rerank` the consensus of each greedy reply, `rerank.candidates`
        sampled ones and the message's `references` (the replies of its retrieved examples). With `rerank` the
        greedy reply is decoded in the sampling batch (`sample(greedy_first=True)`), by the sampling model."""
        if self.rerank is None or not self.rerank.candidates:
            return self.generate(prompts)
        r = self.rerank
        n = r.candidates + 1
        step = max(1, SAMPLE_ROWS // n)  # prompts sampled at once
        pools = [s for lo in range(0, len(prompts), step) for s in
                 self.sample(prompts[lo: lo + step], n, r.temperature, r.top_p, self._draws, greedy_first=True)]
        references = references if references is not None else [[] for _ in prompts]
        ranked = r.rank([[c.text for c in pool] for pool in pools], references)
        out = []
        for pool, order in zip(pools, ranked):
            best = pool[order[0]]
            best.alternatives = [(pool[i].text, pool[i].truncated) for i in order[1:]]
            out.append(best)
        return out

    @contextlib.contextmanager
    def draws_kept(self):
        """Replies made inside leave the seeded draws of the candidates as they were (warm-ups)."""
        state = None if self._draws is None else self._draws.get_state()
        try:
            yield
        finally:
            if state is not None:
                self._draws.set_state(state)

    @torch.no_grad()
    def generate(self, prompts: list[list[int]], max_new_tokens: int | None = None,
                 min_new_tokens: int | None = None) -> list[Reply]:
        """Greedy replies of a batch; `min_new_tokens` holds the end token back (benchmarks: exact lengths)."""
        if not prompts or any(not p for p in prompts):
            raise ValueError("every prompt needs at least one token (an empty message is answered without the model)")
        pad = self.tokenizer.pad_token_id
        n, width = len(prompts), max(len(p) for p in prompts)
        if self.engine == "compiled":  # fewer shapes to compile: a batch size warm_up compiled, or a power of two
            prompts = prompts + [prompts[0]] * (min((b for b in self._warm_batches if b >= n), default=_pow2(n)) - n)
        ids, mask, embeds = self._inputs(prompts, width)
        max_new_tokens = max_new_tokens or self.max_new_tokens
        if self.engine == "compiled":
            min_new = min_new_tokens or 0
            new = self._static_decode(ids, embeds, mask, max_new_tokens, min_new,
                                      lambda logits, seen, t: self._pick(logits, seen, hold_eos=t < min_new))
        else:
            kwargs = dict(attention_mask=mask, max_new_tokens=max_new_tokens, do_sample=False, num_beams=1,
                          repetition_penalty=self.repetition_penalty, eos_token_id=self.tokenizer.eos_token_id,
                          pad_token_id=pad, temperature=None, top_p=None, top_k=None, min_new_tokens=min_new_tokens)
            if embeds is not None:
                out = self.model.generate(inputs_embeds=embeds, **kwargs)
                new = out if out.shape[1] <= max_new_tokens else out[:, embeds.shape[1]:]
            else:
                new = self.model.generate(input_ids=ids, **kwargs)[:, width:]
        return self._replies(new[:n].tolist())

    def _replies(self, rows: list[list[int]]) -> list[Reply]:
        """Decoded token rows, each cut at its first end token; a row without one hit the token limit."""
        eos, out = self.tokenizer.eos_token_id, []
        for row in rows:
            ended = eos in row
            row = row[: row.index(eos)] if ended else row
            out.append(Reply(self.tokenizer.decode(row, skip_special_tokens=True).strip(), not ended, row))
        return out

    def _inputs(self, prompts: list[list[int]], width: int, model=None):
        """Left-padded ids and attention mask of a batch, and the input embeddings when a soft prompt leads them
        (its positions then also lead the mask); embeddings are None without a soft prompt."""
        ids = torch.full((len(prompts), width), self.tokenizer.pad_token_id, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for i, p in enumerate(prompts):
            ids[i, width - len(p):] = torch.tensor(p)
            mask[i, width - len(p):] = 1
        ids, mask = ids.to(self.device), mask.to(self.device)
        embeds = None
        if self.soft_prompt is not None:
            embeds = (self.model if model is None else model).get_input_embeddings()(ids)
            soft = self.soft_prompt.to(embeds.dtype).expand(len(prompts), -1, -1)
            embeds = torch.cat([soft, embeds], dim=1)
            mask = torch.cat([torch.ones(len(prompts), soft.shape[1], dtype=mask.dtype, device=mask.device), mask], 1)
        return ids, mask, embeds

    @torch.no_grad()
    def sample(self, prompts: list[list[int]], n: int, temperature: float, top_p: float,
               generator: torch.Generator | None = None, max_new_tokens: int | None = None,
               greedy_first: bool = False) -> list[list[Reply]]:
        """`n` sampled replies per prompt (temperature, then nucleus `top_p` among the SAMPLE_TOP_K likeliest
        tokens), for reranking (reranking.py); with `greedy_first` the first of each prompt's n is its greedy reply
        (the repetition penalty applied as `generate` applies it), decoded in the same batch.

        Eager engine: each prompt is read once, and its KV cache is held once for its n candidates
        (prefix_sharing.py: each decoding step reads it once per prompt, not once per candidate), so n replies cost
        n times the decoding of a reply's own tokens but one prompt. Finished replies leave the batch at once (their
        rows are dropped), so the batch shrinks to the replies still being written. Compiled engine: one prompt,
        or SAMPLE_GROUP prompts, at a time, their candidates the rows of the static-cache loop (`_static_sample`), on a
        GPU replayed as CUDA graphs; it decodes with the model itself, so a sampler in another dtype (`sample_dtype`,
        a CPU's bf16 copy) samples with the eager loop. The repetition penalty applies to greedy replies only.
        `generator` seeds the draws: the same prompts, batch, engine and seed give the same candidates. They are
        decoded by `self.sampler` (the model, or its copy in the Generator's `sample_dtype`)."""
        if not prompts or any(not p for p in prompts):
            raise ValueError("every prompt needs at least one token (an empty message is answered without the model)")
        from transformers import DynamicCache

        max_new_tokens = max_new_tokens or self.max_new_tokens
        if self.engine == "compiled" and self.sampler is self.model:  # SAMPLE_GROUP prompts at a time: _static_sample
            return [pool for lo in range(0, len(prompts), SAMPLE_GROUP) for pool in self._static_sample(
                prompts[lo: lo + SAMPLE_GROUP], n, temperature, top_p, generator, max_new_tokens, greedy_first)]
        eos = self.tokenizer.eos_token_id
        model = self.sampler
        ids, mask, embeds = self._inputs(prompts, max(len(p) for p in prompts), model)
        positions = (mask.long().cumsum(-1) - 1).clamp(min=0)
        cache = DynamicCache(config=model.config)
        logits = model(input_ids=ids if embeds is None else None, inputs_embeds=embeds, attention_mask=mask,
                       position_ids=positions, past_key_values=cache, use_cache=True, logits_to_keep=1).logits
        shared = SharedPrompt.from_cache(cache, mask, n)
        own = DynamicCache(config=model.config)  # each candidate's own tokens
        logits = logits[:, -1].float().repeat_interleave(n, 0)
        last = positions[:, -1:].repeat_interleave(n, 0)
        rows = shared.rows  # which reply each batch row writes
        tokens = torch.full((len(prompts) * n, max_new_tokens), eos, dtype=torch.long, device=self.device)
        seen = None  # the tokens each row's repetition penalty sees: prompt ids (not a soft prompt's) and its reply
        if greedy_first and self.repetition_penalty != 1.0:
            seen = torch.zeros(len(prompts), logits.shape[-1], dtype=torch.bool, device=self.device)
            if embeds is None:
                seen.scatter_(1, ids, True)
            seen = seen.repeat_interleave(n, 0)
        with shared_prompt_attention(model.config):
            for t in range(max_new_tokens):
                token = _draw(logits, temperature, top_p, generator)
                if greedy_first and bool((first := rows % n == 0).any()):
                    token[first] = self._pick(logits[first], None if seen is None else seen[first], hold_eos=False)
                if seen is not None:
                    seen[torch.arange(len(rows), device=self.device), token] = True
                tokens[rows, t] = token
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
        out = self._replies(tokens.tolist())  # rows start as end tokens: a row that ended keeps them after its end
        return [out[i * n:(i + 1) * n] for i in range(len(prompts))]

    def _static_sample(self, prompts: list[list[int]], n: int, temperature: float, top_p: float,
                       generator: torch.Generator | None, max_new_tokens: int, greedy_first: bool) -> list[list[Reply]]:
        """`sample` on the compiled engine, for one prompt or up to SAMPLE_GROUP of them: each prompt's n candidates
        are n rows of `_static_decode` (each row reading its own copy of the prompt's cache), and a group of more than
        one prompt is padded to SAMPLE_GROUP prompts (copies of the first, dropped). No row leaves the batch, so
        every step decodes the same shape: a GPU compiles the graphs of two batch sizes per cache length (n rows, and
        n x SAMPLE_GROUP; every other batch size would cost compilations of its own) and replays them, and the loop
        ends once every row has ended (looked for every EOS_CHECK steps). The first row of each prompt decodes its
        greedy reply with `greedy_first`; the others draw as the eager loop does (`_draw`), which also draws for the
        greedy rows, so one seed gives both engines the same candidates of one prompt while none ends early."""
        m = len(prompts)
        group = prompts + [prompts[0]] * ((SAMPLE_GROUP if m > 1 else 1) - m)
        ids, mask, embeds = self._inputs([p for p in group for _ in range(n)], max(len(p) for p in group))
        greedy = torch.zeros(len(group) * n, dtype=torch.bool, device=self.device)
        greedy[::n] = greedy_first

        def pick(logits, seen, t):
            return torch.where(greedy, self._pick(logits, seen, hold_eos=False),
                               _draw(logits, temperature, top_p, generator))
        out = self._replies(self._static_decode(ids, embeds, mask, max_new_tokens, 0, pick)[: m * n].tolist())
        return [out[i * n:(i + 1) * n] for i in range(m)]

    def _static_decode(self, ids, embeds, mask, max_new_tokens: int, min_new_tokens: int,
                       pick: Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor]) -> torch.Tensor:
        """The compiled engine's loop (after gpt-fast): the prompt, then one token per step, through a static KV
        cache on fixed shapes, with nothing copied back to the host until the end (finished replies are looked for
        every EOS_CHECK steps). The prompt is left-padded to whole chunks of PREFILL_CHUNK tokens and read a chunk
        at a time, into a cache `cache_length` long, whatever the prompt's width: on a GPU a chunk's forward and a
        decoding step's are compiled for these shapes (two graphs per cache length and batch size, not one per
        prompt width) and replayed as CUDA graphs; on a CPU they run uncompiled. `pick(logits, seen,
        t)` chooses step t's tokens: greedily (`generate`), it decodes what transformers' generate() decodes: the
        same position ids (left padding), repetition penalty (`seen`: over the prompt ids, pads included, as
        transformers does; over the generated ids only behind a soft prompt, whose prompt is embeddings) and
        end-token hold-back. Returns the new token ids (batch, <= max_new_tokens)."""
        b, prompt_ids = mask.shape[0], ids
        if pad := -mask.shape[1] % PREFILL_CHUNK:  # more left padding, masked out like the batch's own
            mask = torch.nn.functional.pad(mask, (pad, 0))
            ids = torch.nn.functional.pad(ids, (pad, 0), value=self.tokenizer.pad_token_id)
            embeds = None if embeds is None else torch.nn.functional.pad(embeds, (0, 0, pad, 0))
        width, length = mask.shape[1], self.cache_length(prompt_ids.shape[1], max_new_tokens)
        cache = self._cache(b, length)
        full_mask = torch.cat([mask, mask.new_ones(b, length - width)], dim=1)
        positions = (mask.long().cumsum(-1) - 1).masked_fill(mask == 0, 0)
        step = self._compiled_step() if self.device.type == "cuda" else self._step

        def chunk(x, lo: int):
            """Columns lo.. of a chunk, copied in standard strides (a slice's strides name the prompt's width,
            and a compiled graph is made per stride)."""
            return None if x is None else x[:, lo: lo + PREFILL_CHUNK].clone(memory_format=torch.contiguous_format)

        for lo in range(0, width, PREFILL_CHUNK):  # the cache counts the tokens it has read
            logits = step(None if embeds is not None else chunk(ids, lo), chunk(embeds, lo), chunk(positions, lo),
                          full_mask, cache)
        seen = torch.zeros(logits.shape, dtype=torch.bool, device=self.device)
        if embeds is None:
            seen.scatter_(1, prompt_ids, True)  # without the chunks' padding, as generate() pads
        eos = self.tokenizer.eos_token_id
        out = torch.full((b, max_new_tokens), eos, dtype=torch.long, device=self.device)
        last = positions[:, -1:]
        for t in range(max_new_tokens):
            token = pick(logits, seen, t)
            out[:, t] = token
            if t + 1 == max_new_tokens or (t + 1 >= min_new_tokens and (t + 1) % EOS_CHECK == 0
                                           and bool((out[:, :t + 1] == eos).any(1).all())):
                return out[:, :t + 1]
            seen.scatter_(1, token[:, None], True)
            logits = step(token[:, None], None, last + 1 + t, full_mask, cache)
        return out

    def cache_length(self, prompt_tokens: int, max_new_tokens: int | None = None) -> int:
        """The compiled engine's static cache length for a prompt of `prompt_tokens` ids: the prompt, at least
        `max_prompt_tokens` long (so every prompt up to it shares one length), with the soft prompt's vectors,
        in whole chunks, then the reply's tokens, rounded up to a multiple of CACHE_BUCKET."""
        soft = 0 if self.soft_prompt is None else self.soft_prompt.shape[1]
        width = -(-(max(prompt_tokens, self.max_prompt_tokens or 0) + soft) // PREFILL_CHUNK) * PREFILL_CHUNK
        return -(-(width + (max_new_tokens or self.max_new_tokens)) // CACHE_BUCKET) * CACHE_BUCKET

    def _cache(self, batch: int, length: int):
        """The static KV cache for this shape, emptied. One per shape, allocated up front and reused, so the
        CUDA graphs replay on its fixed addresses."""
        from transformers import StaticCache

        key = (batch, length)
        if key not in self._caches:
            c = self.model.config.get_text_config(decoder=True)
            head_dim = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
            self._caches[key] = StaticCache(config=c, max_cache_len=length)
            self._caches[key].early_initialization(batch, c.num_key_value_heads, head_dim, self.model.dtype,
                                                   self.device)
        cache = self._caches[key]
        cache.reset()
        return cache

    def _step(self, ids, embeds, positions, mask, cache) -> torch.Tensor:
        """One forward through the static cache: fp32 logits of the last position (as generate() casts them)."""
        return self.model(input_ids=ids, inputs_embeds=embeds, position_ids=positions, attention_mask=mask,
                          past_key_values=cache, use_cache=True, logits_to_keep=1).logits[:, -1].float()

    def _compiled_step(self):
        """`_step` compiled once per process with CUDA graphs: a graph per shape (batch size x cache length, for a
        prompt's chunk of PREFILL_CHUNK tokens and for a decoding step's one)."""
        if self._compiled is None:
            torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 256)
            compiled = torch.compile(self._step, fullgraph=True, dynamic=False, mode="reduce-overhead")

            def step(*args):
                torch.compiler.cudagraph_mark_step_begin()  # the previous step's logits are consumed
                return compiled(*args)
            self._compiled = step
        return self._compiled

    def _pick(self, logits, seen, hold_eos: bool) -> torch.Tensor:
        """transformers' repetition penalty (a seen token's logit divided by the penalty when positive, times it
        when negative), the end token held back while `hold_eos`, then the greedy choice."""
        if self.repetition_penalty != 1.0:
            p = self.repetition_penalty
            logits = torch.where(seen, torch.where(logits < 0, logits * p, logits / p), logits)
        if hold_eos:
            logits[:, self.tokenizer.eos_token_id] = -float("inf")
        return logits.argmax(-1)

    def generate_all(self, prompts: list[list[int]], batch_size: int, progress: bool = True,
                     references: list[list[str]] | None = None) -> tuple[list[Reply], float]:
        """Batched replies (`reply`), longest prompts together; returns the replies in input order and replies/s."""
        from tqdm import tqdm

        order = np.argsort([-len(p) for p in prompts], kind="stable")
        replies: list[Reply | None] = [None] * len(prompts)
        start = time.perf_counter()
        for lo in tqdm(range(0, len(order), batch_size), desc="generate", disable=not progress):
            idx = order[lo: lo + batch_size]
            refs = None if references is None else [references[i] for i in idx]
            for i, r in zip(idx, self.reply([prompts[i] for i in idx], refs)):
                replies[i] = r
        seconds = time.perf_counter() - start
        return replies, len(prompts) / seconds if seconds else 0.0

    def warm_up(self, prompts: list[list[int]], batch_size: int = 1) -> float:
        """Untimed generations that pay the one-off costs before timing; returns their seconds. Eager: a few
        tokens for each prompt given. Compiled, per cache length the prompts need (`cache_length`): a full-length
        reply of one prompt and, with a `batch_size` over one, of `batch_size` prompts rounded up to a power of two,
        the batch every later batch of 2 to that many is padded to (`generate`). With `rerank` the same, each
        prompt's candidates sampled (on draws of their own: the seeded ones stay untouched), for one message and,
        with a `batch_size` over one, for a group of SAMPLE_GROUP (`_static_sample`)."""
        start = time.perf_counter()
        eager, r = self.engine == "eager", self.rerank
        for p in prompts if eager else {self.cache_length(len(p)): p for p in prompts}.values():
            if r is not None and r.candidates:
                for group in [1] if eager or batch_size == 1 else [1, SAMPLE_GROUP]:
                    self.sample([p] * group, r.candidates + 1, r.temperature, r.top_p,
                                torch.Generator(device=self.device),
                                max_new_tokens=min(4, self.max_new_tokens) if eager else None, greedy_first=True)
            elif eager:
                self.generate([p], max_new_tokens=min(4, self.max_new_tokens))
            else:
                for size in sorted({1, _pow2(batch_size)}):
                    self.generate([p] * size, min_new_tokens=self.max_new_tokens)
                    self._warm_batches.add(size)
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        return time.perf_counter() - start

    def timed(self, prompts: list[list[int]], warmup: int = 1,
              references: list[list[str]] | None = None) -> tuple[list[Reply], dict]:
        """Replies (`reply`) one prompt at a time (batch size 1), each timed, candidates and their reranking
        included, after `warmup` short untimed generations (compiled engine: one full-length generation per
        cache length, which compiles it). The replies are real predictions, so measuring latency costs no
        extra decoding."""
        self.warm_up(prompts if self.engine == "compiled" else prompts[:warmup], batch_size=1)
        replies, times = [], []
        for i, p in enumerate(prompts):
            t = time.perf_counter()
            replies.append(self.reply([p], None if references is None else [references[i]])[0])
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            times.append((time.perf_counter() - t) * 1000)
        if not times:
            return replies, {"latency_p50_ms": None, "latency_p95_ms": None}
        return replies, {"latency_p50_ms": round(float(np.percentile(times, 50)), 1),
                         "latency_p95_ms": round(float(np.percentile(times, 95)), 1)}


def _draw(logits: torch.Tensor, temperature: float, top_p: float, generator: torch.Generator | None) -> torch.Tensor:
    """One sampled token per row: at `temperature`, among the SAMPLE_TOP_K likeliest tokens the smallest set whose
    probability reaches `top_p`."""
    top, order = (logits / temperature).topk(min(SAMPLE_TOP_K, logits.shape[-1]), dim=-1)
    probs = torch.softmax(top, -1)
    probs = probs.masked_fill(probs.cumsum(-1) - probs >= top_p, 0.0)
    return order.gather(1, torch.multinomial(probs, 1, generator=generator))[:, 0]


def _copy_in(model, dtype: torch.dtype):
    """A copy of `model` whose parameters are in `dtype`, made parameter by parameter (no full-precision copy on the
    way). Buffers are shared, not cast: rotary position frequencies stay in full precision, as a model loaded in
    `dtype` keeps them."""
    memo = {id(p): torch.nn.Parameter(p.detach().to(dtype), requires_grad=False) for p in model.parameters()}
    memo.update({id(b): b for b in model.buffers()})
    return copy.deepcopy(model, memo)


def load_system(system: str, base_dir: str, adapter_dir: str | None = None):
    """(model, tokenizer) for an LLM system: the base alone, or the base with a method's adapter.
    A method that trains on a 4-bit NF4 base (QLoRA) is served on that same base."""
    tokenizer = models.load_tokenizer(base_dir)
    if system == "zero_shot":
        return models.load_base(base_dir), tokenizer
    if adapter_dir is None:
        raise ValueError(f"{system} needs its adapter folder (dvc.yaml's paths.adapters/{system})")
    models.check_adapter(adapter_dir, base_dir)
    from .methods import get

    base = models.load_base(base_dir, quantize_4bit=get(system).quantized_base)
    return models.load_adapter(base, adapter_dir, base_dir), tokenizer
