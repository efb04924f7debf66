"""Deterministic batched reply generation for the base, a LoRA adapter or a soft prompt."""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from . import models


@dataclass
class Reply:
    text: str
    truncated: bool  # hit the token limit before the end token
    token_ids: list[int]


WIDTH_BUCKET = 64  # the compiled engine pads prompts to a multiple of this: one compiled graph per bucket


def _bucket(width: int) -> int:
    """`width` rounded up to a multiple of WIDTH_BUCKET: the prompt width the compiled engine pads to."""
    return -(-width // WIDTH_BUCKET) * WIDTH_BUCKET


def resolve_engine(engine: str, device: torch.device) -> str:
    """`auto`: compiled on a GPU, eager elsewhere. On a CPU the compiled engine keeps the static cache and
    skips compilation (transformers compiles only on accelerators), which measured no faster there."""
    if engine == "auto":
        return "compiled" if device.type == "cuda" else "eager"
    return engine


class Generator:
    """Greedy decoding with left padding. A soft prompt (prompt tuning) is prepended as input
    embeddings to the frozen base: peft's own generate() degenerates after the first token.

    `engine`: eager (transformers' dynamic KV cache) or compiled: a static KV cache, and on a GPU the decoding
    step compiled by torch.compile with CUDA graphs ("reduce-overhead"). The static cache is sized per call (the
    batch's prompt width plus max_new_tokens), so no prompt outgrows it; widths are rounded up to a multiple of
    WIDTH_BUCKET, so a process compiles once per bucket and batch size (the first such call pays it: `warm_up`)."""

    def __init__(self, model, tokenizer, max_new_tokens: int = 64, repetition_penalty: float = 1.1,
                 engine: str = "eager"):
        self.tokenizer = tokenizer
        self.max_new_tokens = max_new_tokens
        self.repetition_penalty = repetition_penalty
        self.soft_prompt = None
        if hasattr(model, "peft_config") and getattr(model, "active_peft_config", None) is not None \
                and model.active_peft_config.is_prompt_learning:
            with torch.no_grad():
                self.soft_prompt = model.get_prompt(batch_size=1).detach()  # (1, n_virtual, hidden)
            model = model.get_base_model()
        self.model = model.eval()
        self.device = next(model.parameters()).device
        self.engine = resolve_engine(engine, self.device)
        if self.engine not in ("eager", "compiled"):
            raise ValueError(f"engine {engine!r}: use auto, eager or compiled")

    @torch.no_grad()
    def generate(self, prompts: list[list[int]], max_new_tokens: int | None = None,
                 min_new_tokens: int | None = None) -> list[Reply]:
        """Greedy replies of a batch; `min_new_tokens` holds the end token back (benchmarks: exact lengths)."""
        if not prompts or any(not p for p in prompts):
            raise ValueError("every prompt needs at least one token (an empty message is answered without the model)")
        pad = self.tokenizer.pad_token_id
        width = max(len(p) for p in prompts)
        if self.engine == "compiled":
            width = _bucket(width)
        ids = torch.full((len(prompts), width), pad, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for i, p in enumerate(prompts):
            ids[i, width - len(p):] = torch.tensor(p)
            mask[i, width - len(p):] = 1
        ids, mask = ids.to(self.device), mask.to(self.device)
        max_new_tokens = max_new_tokens or self.max_new_tokens
        kwargs = dict(max_new_tokens=max_new_tokens, do_sample=False, num_beams=1,
                      repetition_penalty=self.repetition_penalty, eos_token_id=self.tokenizer.eos_token_id,
                      pad_token_id=pad, temperature=None, top_p=None, top_k=None, min_new_tokens=min_new_tokens)
        if self.engine == "compiled":
            kwargs["cache_implementation"] = "static"
        if self.soft_prompt is not None:
            embeds = self.model.get_input_embeddings()(ids)
            soft = self.soft_prompt.to(embeds.dtype).expand(len(prompts), -1, -1)
            embeds = torch.cat([soft, embeds], dim=1)
            mask = torch.cat([torch.ones(len(prompts), soft.shape[1], dtype=mask.dtype, device=mask.device), mask], 1)
            out = self.model.generate(inputs_embeds=embeds, attention_mask=mask, **kwargs)
            new = out if out.shape[1] <= max_new_tokens else out[:, embeds.shape[1]:]
        else:
            out = self.model.generate(input_ids=ids, attention_mask=mask, **kwargs)
            new = out[:, width:]
        replies = []
        for row in new.tolist():
            ended = self.tokenizer.eos_token_id in row
            row = row[: row.index(self.tokenizer.eos_token_id)] if ended else row
            replies.append(Reply(self.tokenizer.decode(row, skip_special_tokens=True).strip(), not ended, row))
        return replies

    def generate_all(self, prompts: list[list[int]], batch_size: int, progress: bool = True) -> tuple[list[Reply], float]:
        """Batched replies, longest prompts together; returns the replies in input order and replies/s."""
        from tqdm import tqdm

        order = np.argsort([-len(p) for p in prompts], kind="stable")
        replies: list[Reply | None] = [None] * len(prompts)
        start = time.perf_counter()
        for lo in tqdm(range(0, len(order), batch_size), desc="generate", disable=not progress):
            idx = order[lo: lo + batch_size]
            for i, r in zip(idx, self.generate([prompts[i] for i in idx])):
                replies[i] = r
        seconds = time.perf_counter() - start
        return replies, len(prompts) / seconds if seconds else 0.0

    def warm_up(self, prompts: list[list[int]], batch_size: int = 1) -> float:
        """Untimed generations that pay the one-off costs before timing; returns their seconds. Eager: a few
        tokens for each prompt given. Compiled: a full-length batch of `batch_size` per prompt-width bucket,
        the shapes the compiled graphs are made for."""
        start = time.perf_counter()
        if self.engine == "eager":
            for p in prompts:
                self.generate([p], max_new_tokens=min(4, self.max_new_tokens))
        else:
            by_bucket = {_bucket(len(p)): p for p in prompts}
            for p in by_bucket.values():
                self.generate([p] * batch_size, min_new_tokens=self.max_new_tokens)
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        return time.perf_counter() - start

    def timed(self, prompts: list[list[int]], warmup: int = 1) -> tuple[list[Reply], dict]:
        """Replies one prompt at a time (batch size 1), each timed, after `warmup` short untimed
        generations (compiled engine: one full-length generation per prompt-width bucket, which compiles it).
        The replies are real predictions, so measuring latency costs no extra decoding."""
        self.warm_up(prompts[:warmup] if self.engine == "eager" else prompts, batch_size=1)
        replies, times = [], []
        for p in prompts:
            t = time.perf_counter()
            replies.append(self.generate([p])[0])
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            times.append((time.perf_counter() - t) * 1000)
        if not times:
            return replies, {"latency_p50_ms": None, "latency_p95_ms": None}
        return replies, {"latency_p50_ms": round(float(np.percentile(times, 50)), 1),
                         "latency_p95_ms": round(float(np.percentile(times, 95)), 1)}


def load_system(system: str, base_dir: str, adapter_dir: str | None = None):
    """(model, tokenizer) for an LLM system: the base alone, or the base with a method's adapter.
    QLoRA adapters are served on the same 4-bit NF4 base they were trained on."""
    tokenizer = models.load_tokenizer(base_dir)
    if system == "zero_shot":
        return models.load_base(base_dir), tokenizer
    if adapter_dir is None:
        raise ValueError(f"{system} needs its adapter folder (dvc.yaml's paths.adapters/{system})")
    models.check_adapter(adapter_dir, base_dir)
    base = models.load_base(base_dir, quantize_4bit=(system == "qlora"))
    return models.load_adapter(base, adapter_dir, base_dir), tokenizer
