"""Where and in what precision this process computes: device, dtype, attention kernel."""
from __future__ import annotations

import os
from pathlib import Path

import torch


def cpu_has_fast_bf16(cpuinfo: str | None = None) -> bool:
    """Only AMX makes bf16 pay for this model on a CPU. On a plain AVX2 CPU bf16 matmuls run ~80x
    slower than fp32, and on a Xeon with AVX512-BF16 but no AMX both trainings and generation ran
    about twice as fast in fp32 (`python benchmarks/cpu_dtype.py` measures it on the machine at hand)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return False
    return "amx_bf16" in cpuinfo.split()


def compute_dtype() -> torch.dtype:
    """bf16 on CUDA (Ampere+) and on CPUs with AMX; fp32 elsewhere.
    SUPPORTAGENT_DTYPE=float32|bfloat16 overrides."""
    forced = os.environ.get("SUPPORTAGENT_DTYPE")
    if forced:
        return getattr(torch, forced)
    if torch.cuda.is_available():
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if cpu_has_fast_bf16() else torch.float32


def device() -> torch.device:
    """This process's device: under `accelerate launch` (DDP) each process takes the GPU of its LOCAL_RANK."""
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return torch.device("cpu")


GQA_ATTENTION = "sdpa_gqa"


def _sdpa_gqa(module, query, key, value, attention_mask, dropout=0.0, scaling=None, is_causal=None, **kwargs):
    """PyTorch SDPA with grouped-query attention done inside the kernel (`enable_gqa`), also when a
    padding mask is given. transformers' `sdpa` copies each key/value head to every query head it
    serves whenever there is a mask (batched, left-padded or static-cache generation): on a CPU that copy
    of the whole KV cache in every layer and decoding step was a fifth of a step's time, and on an H100 at
    batch 32 it was a seventh of the GPU time (cuDNN's attention takes the mask and the fewer key/value
    heads as they are). Same results."""
    causal = is_causal if is_causal is not None else getattr(module, "is_causal", True)
    out = torch.nn.functional.scaled_dot_product_attention(
        query, key, value, attn_mask=attention_mask, dropout_p=dropout, scale=scaling,
        is_causal=bool(causal and attention_mask is None and query.shape[2] > 1),
        enable_gqa=query.shape[1] != key.shape[1])
    return out.transpose(1, 2).contiguous(), None


def attention_implementation(for_training: bool = False) -> str:
    """`sdpa_gqa` for generation (where the copy costs); transformers' own `sdpa` for training, so adapters
    train exactly as before."""
    if for_training:
        return "sdpa"
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(GQA_ATTENTION, _sdpa_gqa)
    AttentionMaskInterface.register(GQA_ATTENTION, sdpa_mask)
    return GQA_ATTENTION
