"""How a loaded system is prepared to answer: a QLoRA adapter folded into the dequantised 4-bit base, then
the decoding engine.

Kept apart from `models.py` (which training imports), so that a change to serving does not retrain.
"""
from __future__ import annotations

import warnings

import torch


def fold_4bit(model) -> int:
    """Fold each NF4 layer, and the LoRA adapter on it, into one plain Linear in the layer's compute dtype.

    The weight is bitsandbytes' own dequantisation of the 4-bit base (what its kernels recompute on every
    call) plus the adapter's delta B @ A * scale, so the model computes the same function as the adapter on
    its 4-bit base, up to rounding (a test checks logits and replies). This is not the lossy merge into the
    original 16-bit base: the adapter stays on the quantised weights it was trained with. It removes the
    per-call dequantisation and the adapter's extra small matmuls (faster generation with the same replies:
    `benchmarks/results/cpu_serving/`, `benchmarks/results/serving_7b/`), at the price of the base held
    unquantised (2 or 4 bytes a weight instead of about half a byte): `evaluate.fold_qlora: false`
    keeps the 4-bit kernels for memory-bound deployments. Works on CPU and CUDA; returns the layers folded.

    A GPU without room for the unquantised weights: folding stops at the first out-of-memory with a warning,
    and the layers not yet folded keep their 4-bit kernels and adapter. Each layer computes the same function
    either way, so the replies do not change; only the speed-up is partial.
    """
    import bitsandbytes as bnb
    from peft.tuners.lora import LoraLayer

    n = 0
    for parent in list(model.modules()):
        if isinstance(parent, LoraLayer):  # its 4-bit base layer is folded with it, as `child` below
            continue
        for name, child in list(parent.named_children()):
            base = child.get_base_layer() if isinstance(child, LoraLayer) else child
            if not isinstance(base, bnb.nn.Linear4bit):
                continue
            dtype = base.compute_dtype or torch.float32
            data, state = base.weight.data, base.weight.quant_state
            if getattr(state, "packing_format_for_cpu", False):
                # repacked for bitsandbytes' AVX512-BF16 CPU kernel by an earlier no-grad forward: dequantising
                # that layout as NF4 gives wrong weights, so undo the repack first (as bitsandbytes does to save)
                data, state = bnb.functional._convert_weight_packed_for_cpu_inverse(data, state)
            try:
                weight = bnb.functional.dequantize_4bit(data, state).to(dtype)
                if isinstance(child, LoraLayer):
                    for adapter in child.active_adapters:
                        weight = weight + child.get_delta_weight(adapter).to(dtype)
            except torch.cuda.OutOfMemoryError:
                warnings.warn(f"no GPU memory left to fold more 4-bit layers: {n} folded, the rest keep their 4-bit "
                              "kernels (same replies, less speed-up; evaluate.fold_qlora: false skips folding)")
                torch.cuda.empty_cache()
                return n
            dense = torch.nn.Linear(base.in_features, base.out_features, bias=base.bias is not None, device="meta")
            dense.weight = torch.nn.Parameter(weight, requires_grad=False)
            if base.bias is not None:
                dense.bias = torch.nn.Parameter(base.bias.data.to(dtype), requires_grad=False)
            setattr(parent, name, dense)
            n += 1
    if n and not any(isinstance(m, bnb.nn.Linear4bit) for m in model.modules()):
        # nothing quantised is left: transformers may now compile the model (evaluate.engine: compiled); it
        # refuses to while a bitsandbytes quantizer is attached
        for m in model.modules():
            if getattr(m, "hf_quantizer", None) is not None:
                m.hf_quantizer = None
    return n


def ready_to_serve(model, tokenizer, ev, embedder=None, seed: int = 0, max_prompt_tokens: int | None = None):
    """The Generator that evaluation, `reply` and `serve` answer with: QLoRA folded first when
    `evaluate.fold_qlora` says so, then the decoding engine of `evaluate.engine` (`ev`: EvaluateParams; its static
    cache sized for prompts of up to `max_prompt_tokens`, model.max_prompt_tokens), and with
    `evaluate.candidates` the reply chosen among sampled candidates by `embedder` (reranking.py; draws seeded by
    `seed`). Candidates are sampled in the dtype this machine trains in (`runtime.compute_dtype(training=True)`),
    the fastest it multiplies: on AMD CPUs with AVX512-BF16, which serve greedy replies in fp32, that is a bf16
    copy of the model (faster sampling for another copy's memory); elsewhere the model itself (`Generator.sampler`)."""
    from functools import partial

    from .generation import Generator, Rerank
    from .reranking import pool_rankings, rankings
    from ..runtime import compute_dtype

    if ev.fold_qlora or ev.engine == "vllm":  # vLLM serves the folded function
        fold_4bit(model)
    rerank = None
    if ev.candidates:
        if embedder is None:
            raise ValueError(
                "evaluate.candidates needs the embedder that compares the candidates (models.load_embedder())"
            )
        ranks = partial(pool_rankings, past_bonus=ev.rerank_past_reply_bonus) if ev.rerank_past_replies else rankings
        rerank = Rerank(ev.candidates, ev.temperature, ev.top_p, seed, partial(
            ranks, embedder=embedder, word_weight=ev.rerank_word_weight, reference_weight=ev.rerank_reference_weight),
            ev.rerank_likelihood_weight, ev.rerank_past_replies)
    if ev.engine == "vllm":
        from .vllm_engine import VllmGenerator

        return VllmGenerator(model, tokenizer, ev.max_new_tokens, ev.repetition_penalty, rerank, max_prompt_tokens)
    return Generator(model, tokenizer, ev.max_new_tokens, ev.repetition_penalty, ev.engine, rerank,
                     sample_dtype=compute_dtype(training=True), max_prompt_tokens=max_prompt_tokens)
