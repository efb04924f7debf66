"""Where and in what precision this process computes: device, dtype, attention kernel."""
from __future__ import annotations

import os
from pathlib import Path

import torch


def cpu_flags(cpuinfo: str | None = None) -> tuple[str, set[str]]:
    """(vendor, flags) of this CPU from /proc/cpuinfo ("", empty set where it cannot be read)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return "", set()
    vendor = next((line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if line.startswith("vendor_id")), "")
    return vendor, set(cpuinfo.split())


def cpu_has_fast_bf16(cpuinfo: str | None = None) -> bool:
    """Serving in bf16 on a CPU only with AMX. On a plain AVX2 CPU bf16 matmuls are much slower than fp32; on
    a Xeon with AVX512-BF16 but no AMX generation was faster in fp32; on an AMD EPYC with AVX512-BF16 bf16
    decoded faster but changed greedy replies of both methods (`benchmarks/results/cpu_dtype/`,
    `benchmarks/results/cpu_serving/`)."""
    return "amx_bf16" in cpu_flags(cpuinfo)[1]


def cpu_trains_fast_in_bf16(cpuinfo: str | None = None) -> bool:
    """Mixed-precision training (bf16 matmuls, fp32 adapter weights and optimizer) where the CPU multiplies
    bf16 natively fast: AMX, or an AMD CPU with AVX512-BF16 (Zen 4 and later; `benchmarks/results/cpu_dtype/`
    measures matmuls and a training step in both dtypes, `benchmarks/results/time_pipeline/` the validation
    losses). Not Intel's AVX512-BF16 without AMX, where bf16 measured slower than fp32."""
    vendor, flags = cpu_flags(cpuinfo)
    return "amx_bf16" in flags or ("avx512_bf16" in flags and vendor == "AuthenticAMD")


def compute_dtype(training: bool = False) -> torch.dtype:
    """bf16 on CUDA (Ampere+) and on CPUs with AMX; fp32 elsewhere, except that training (`training=True`)
    also computes in bf16 on the CPUs of `cpu_trains_fast_in_bf16`. Adapters are kept in fp32 either way, so
    a bf16-trained adapter serves in fp32. SUPPORTAGENT_DTYPE=float32|bfloat16 overrides both."""
    forced = os.environ.get("SUPPORTAGENT_DTYPE")
    if forced:
        return getattr(torch, forced)
    if torch.cuda.is_available():
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if cpu_has_fast_bf16() or (training and cpu_trains_fast_in_bf16()):
        return torch.bfloat16
    return torch.float32


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
