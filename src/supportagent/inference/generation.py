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

from ..model import models
from .decoding import PREFILL_CHUNK, Draws, batch_inputs, draw, greedy, shared_decode, shared_prefill, static_decode
from . import likelihood


@dataclass
class Reply:
    text: str
    truncated: bool  # hit the token limit before the end token
    token_ids: list[int]
    alternatives: list[tuple[str, bool]] = field(default_factory=list)  # the rest of the pool, best-ranked first:
    # (text, truncated), what the guard (guard.py) sends when this reply fails a check


@dataclass
class Rerank:
    """`evaluate.candidates` sampled replies besides the greedy one, and how they are ranked: `rank` takes each
    message's candidate texts and references and returns its candidates' indices best first (reranking.rankings),
    or the indices of its candidates and references together (reranking.pool_rankings): one past a candidate's is a
    reference, a past reply."""
    candidates: int
    temperature: float
    top_p: float
    seed: int
    rank: Callable[[list[list[str]], list[list[str]]], list[list[int]]]
    likelihood_weight: float = 0.0  # > 0: `rank` also takes each pool's `likelihoods` (likelihood.py) and this weight
    past_replies: bool = True  # whether `rank` ranks the references with the candidates (the likelihood reads them)


SAMPLE_ROWS = 512  # replies sampled at once at most (prompts x candidates)
CACHE_BUCKET = 256  # the compiled engine's static KV cache (prompt and reply) is a multiple of this long: its
                    # graphs are compiled per cache length and batch size (`Generator.cache_length`)
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
        greedy reply is decoded in the sampling batch (`sample(greedy_first=True)`), by the sampling model. Where
        the references are ranked with the candidates (`evaluate.rerank_past_replies`), the reply or one of its
        alternatives may be a past reply (a reply without token ids). With `rerank.likelihood_weight` the ranking
        also gets each member's likelihood after the prompt (`sample_scored`)."""
        if self.rerank is None or not self.rerank.candidates:
            return self.generate(prompts)
        r = self.rerank
        n = r.candidates + 1
        step = max(1, SAMPLE_ROWS // n)  # prompts sampled at once
        references = references if references is not None else [[] for _ in prompts]
        if r.likelihood_weight:  # how likely the model finds each member of the pool after the prompt
            scored = references if r.past_replies else [[] for _ in prompts]
            sampled = [self.sample_scored(prompts[lo: lo + step], n, r.temperature, r.top_p, self._draws,
                                          scored[lo: lo + step]) for lo in range(0, len(prompts), step)]
            pools = [pool for batch, _ in sampled for pool in batch]
            ranked = r.rank([[c.text for c in pool] for pool in pools], references,
                            likelihood_weight=r.likelihood_weight,
                            likelihoods=[lp for _, batch in sampled for lp in batch])
        else:
            pools = [s for lo in range(0, len(prompts), step) for s in
                     self.sample(prompts[lo: lo + step], n, r.temperature, r.top_p, self._draws, greedy_first=True)]
            ranked = r.rank([[c.text for c in pool] for pool in pools], references)
        out = []
        for pool, refs, order in zip(pools, references, ranked):
            ranked_pool = [(c.text, c.truncated) for c in pool] + [(t, False) for t in refs]
            best = pool[order[0]] if order[0] < len(pool) else Reply(ranked_pool[order[0]][0], False, [])
            best.alternatives = [ranked_pool[i] for i in order[1:]]
            out.append(best)
        return out

    def likelihoods(self, prompt: list[int], texts: list[str]) -> np.ndarray:
        """Each text's mean token log-probability after `prompt` under the sampling model (likelihood.py), its end
        token included, at most the length of a reply."""
        ids, mask, embeds = self._inputs([prompt], len(prompt), self.sampler)
        return likelihood.likelihoods(self.sampler, self.tokenizer, ids, mask, embeds, texts, self.max_new_tokens + 1)

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
                                      lambda logits, seen, t: self._greedy(logits, seen, hold_eos=t < min_new))
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
        """`decoding.batch_inputs` with this model's pad token, device, soft prompt and embedding layer."""
        embed = (self.model if model is None else model).get_input_embeddings()
        return batch_inputs(prompts, width, self.tokenizer.pad_token_id, self.device, self.soft_prompt, embed)

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
        return self._sample(prompts, n, Draws(temperature, top_p, generator), max_new_tokens, greedy_first)[0]

    def sample_scored(self, prompts: list[list[int]], n: int, temperature: float, top_p: float,
                      generator: torch.Generator | None, scored: list[list[str]]
                      ) -> tuple[list[list[Reply]], list[np.ndarray]]:
        """`sample(greedy_first=True)`, the same candidates, and each prompt's likelihoods (likelihood.py): of its
        candidates, then of its texts in `scored` (its past replies). The eager loop keeps the candidates' token
        log-probabilities as it draws them and reads the texts after the prompt cache it already holds; the compiled
        engine reads them all anew."""
        return self._sample(prompts, n, Draws(temperature, top_p, generator), None, True, scored)

    @torch.no_grad()
    def _sample(self, prompts: list[list[int]], n: int, d: Draws, max_new_tokens: int | None, greedy_first: bool,
                scored: list[list[str]] | None = None) -> tuple[list[list[Reply]], list[np.ndarray] | None]:
        if not prompts or any(not p for p in prompts):
            raise ValueError("every prompt needs at least one token (an empty message is answered without the model)")
        max_new_tokens = max_new_tokens or self.max_new_tokens
        if self.engine == "compiled" and self.sampler is self.model:  # SAMPLE_GROUP prompts at a time: _static_sample
            pools = [pool for lo in range(0, len(prompts), SAMPLE_GROUP) for pool in self._static_sample(
                prompts[lo: lo + SAMPLE_GROUP], n, d, max_new_tokens, greedy_first)]
            return pools, None if scored is None else self._read(prompts, pools, scored)
        model = self.sampler
        ids, mask, embeds = self._inputs(prompts, max(len(p) for p in prompts), model)
        logits, shared, own, last = shared_prefill(model, ids, embeds, mask, n)
        first = None if scored is None else logits[::n].log_softmax(-1)  # each prompt's next-token log-probabilities
        log_probs = None if scored is None else logits.new_zeros((len(prompts) * n, max_new_tokens))
        seen = None  # the tokens each row's repetition penalty sees: prompt ids (not a soft prompt's) and its reply
        if greedy_first and self.repetition_penalty != 1.0:
            seen = torch.zeros(len(prompts), logits.shape[-1], dtype=torch.bool, device=self.device)
            if embeds is None:
                seen.scatter_(1, ids, True)
            seen = seen.repeat_interleave(n, 0)
        greedy_rows = (lambda lg, sn: self._greedy(lg, sn, hold_eos=False)) if greedy_first else None
        tokens = shared_decode(model, logits, shared, own, last, n, max_new_tokens, self.tokenizer.eos_token_id, d,
                               greedy_rows, seen, log_probs)
        rows = tokens.tolist()
        out = self._replies(rows)
        pools = [out[i * n:(i + 1) * n] for i in range(len(prompts))]
        if scored is None:
            return pools, None
        drawn = likelihood.mean_log_probs(rows, log_probs, self.tokenizer.eos_token_id)
        read = [likelihood.after_prompt(model, self.tokenizer, likelihood.cache_of(
                    model, [k[i: i + 1] for k in shared.keys], [v[i: i + 1] for v in shared.values]),
                    shared.mask[i], first[i], list(texts), self.max_new_tokens + 1) for i, texts in enumerate(scored)]
        return pools, [np.concatenate([drawn[i * n:(i + 1) * n], r]) for i, r in enumerate(read)]

    def _read(self, prompts: list[list[int]], pools: list[list[Reply]], scored: list[list[str]]) -> list[np.ndarray]:
        """Each prompt's likelihoods of its pool's candidates and then its texts in `scored`, all read after the
        prompt (`likelihoods`): for an engine whose sampling keeps no log-probabilities."""
        return [self.likelihoods(p, [c.text for c in pool] + list(t)) for p, pool, t in zip(prompts, pools, scored)]

    def _static_sample(self, prompts: list[list[int]], n: int, d: Draws, max_new_tokens: int,
                       greedy_first: bool) -> list[list[Reply]]:
        """`sample` on the compiled engine, for one prompt or up to SAMPLE_GROUP of them: each prompt's n candidates
        are n rows of `_static_decode` (each row reading its own copy of the prompt's cache), and a group of more than
        one prompt is padded to SAMPLE_GROUP prompts (copies of the first, dropped). No row leaves the batch, so
        every step decodes the same shape: a GPU compiles the graphs of two batch sizes per cache length (n rows, and
        n x SAMPLE_GROUP; every other batch size would cost compilations of its own) and replays them, and the loop
        ends once every row has ended (looked for every EOS_CHECK steps). The first row of each prompt decodes its
        greedy reply with `greedy_first`; the others draw as the eager loop does (`draw`), which also draws for the
        greedy rows, so one seed gives both engines the same candidates of one prompt while none ends early."""
        m = len(prompts)
        group = prompts + [prompts[0]] * ((SAMPLE_GROUP if m > 1 else 1) - m)
        ids, mask, embeds = self._inputs([p for p in group for _ in range(n)], max(len(p) for p in group))
        greedy = torch.zeros(len(group) * n, dtype=torch.bool, device=self.device)
        greedy[::n] = greedy_first

        def pick(logits, seen, t):
            return torch.where(greedy, self._greedy(logits, seen, hold_eos=False), draw(logits, d))
        out = self._replies(self._static_decode(ids, embeds, mask, max_new_tokens, 0, pick)[: m * n].tolist())
        return [out[i * n:(i + 1) * n] for i in range(m)]

    def _static_decode(self, ids, embeds, mask, max_new_tokens: int, min_new_tokens: int, pick) -> torch.Tensor:
        """`decoding.static_decode` on this Generator's static cache for the shape (`cache_length` long) and its
        step: on a GPU compiled for these shapes (two graphs per cache length and batch size, not one per prompt
        width) and replayed as CUDA graphs; on a CPU uncompiled."""
        length = self.cache_length(ids.shape[1], max_new_tokens)
        step = self._compiled_step() if self.device.type == "cuda" else self._step
        return static_decode(step, self._cache(mask.shape[0], length), length, ids, embeds, mask,
                             self.tokenizer.pad_token_id, self.tokenizer.eos_token_id, max_new_tokens, min_new_tokens,
                             pick)

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

    def _greedy(self, logits, seen, hold_eos: bool) -> torch.Tensor:
        return greedy(logits, seen, self.repetition_penalty, self.tokenizer.eos_token_id, hold_eos)

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
    from ..model.methods import get

    base = models.load_base(base_dir, quantize_4bit=get(system).quantized_base)
    return models.load_adapter(base, adapter_dir, base_dir), tokenizer
