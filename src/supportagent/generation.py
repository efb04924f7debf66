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


class Generator:
    """Greedy decoding with left padding. A soft prompt (prompt tuning) is prepended as input
    embeddings to the frozen base: peft's own generate() degenerates after the first token."""

    def __init__(self, model, tokenizer, max_new_tokens: int = 64, repetition_penalty: float = 1.1):
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

    @torch.no_grad()
    def generate(self, prompts: list[list[int]], max_new_tokens: int | None = None) -> list[Reply]:
        pad = self.tokenizer.pad_token_id
        width = max(len(p) for p in prompts)
        ids = torch.full((len(prompts), width), pad, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for i, p in enumerate(prompts):
            ids[i, width - len(p):] = torch.tensor(p)
            mask[i, width - len(p):] = 1
        ids, mask = ids.to(self.device), mask.to(self.device)
        max_new_tokens = max_new_tokens or self.max_new_tokens
        kwargs = dict(max_new_tokens=max_new_tokens, do_sample=False, num_beams=1,
                      repetition_penalty=self.repetition_penalty, eos_token_id=self.tokenizer.eos_token_id,
                      pad_token_id=pad, temperature=None, top_p=None, top_k=None)
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

    def timed(self, prompts: list[list[int]], warmup: int = 1) -> tuple[list[Reply], dict]:
        """Replies one prompt at a time (batch size 1), each timed, after `warmup` short untimed
        generations. The replies are real predictions, so measuring latency costs no extra decoding."""
        for p in prompts[:warmup]:
            self.generate([p], max_new_tokens=min(4, self.max_new_tokens))
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
