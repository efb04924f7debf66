"""Trainable adapters on a frozen base: LoRA on the NF4 4-bit base (QLoRA) and a soft prompt (prompt tuning)."""
from __future__ import annotations

from pathlib import Path

import torch

from . import bases, models, runtime
from .config import TrainParams


def set_checkpointing(model, every_n_layers: int) -> None:
    """Gradient checkpointing of every n-th decoder layer (1 = all, 0 = off): the checkpointed layers
    recompute their activations in the backward pass, trading compute for activation memory."""
    if every_n_layers:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False},
                                            every_n_layers=every_n_layers)
    elif getattr(model, "is_gradient_checkpointing", False):
        model.gradient_checkpointing_disable()


def add_lora(model, params: TrainParams):
    """LoRA adapters on a loaded 4-bit base, after peft's k-bit training preparation."""
    from peft import LoraConfig, TaskType, get_peft_model, prepare_model_for_kbit_training

    model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    # k-bit preparation upcasts every frozen 16-bit tensor (norms, embedding, lm_head) to fp32. On a
    # GPU fp32 norm weights turn the whole residual stream fp32 (twice the activation memory and
    # traffic); RMSNorm normalises in fp32 internally anyway, so the frozen tensors go back to the
    # compute dtype. On an fp32 CPU this changes nothing.
    dtype = runtime.compute_dtype(training=True)
    for p in model.parameters():
        if not p.requires_grad and p.dtype == torch.float32:
            p.data = p.data.to(dtype)
    set_checkpointing(model, params.checkpoint_every_n_layers)
    config = LoraConfig(task_type=TaskType.CAUSAL_LM, r=params.lora_r, lora_alpha=params.lora_alpha,
                        lora_dropout=params.lora_dropout, target_modules=list(params.target_modules), bias="none")
    return get_peft_model(model, config)


def add_soft_prompt(model, params: TrainParams, tokenizer_path: str | Path | None = None):
    """A trainable soft prompt (prompt tuning) in front of a frozen 16-bit base."""
    from peft import PromptTuningConfig, PromptTuningInit, TaskType, get_peft_model

    text_init = params.prompt_init == "text"
    if text_init and tokenizer_path is None:
        raise ValueError("prompt_init: text needs the base's tokenizer")
    set_checkpointing(model, params.checkpoint_every_n_layers)
    config = PromptTuningConfig(
        task_type=TaskType.CAUSAL_LM, num_virtual_tokens=params.num_virtual_tokens,
        prompt_tuning_init=PromptTuningInit.TEXT if text_init else PromptTuningInit.RANDOM,
        prompt_tuning_init_text=params.prompt_init_text if text_init else None,
        tokenizer_name_or_path=str(tokenizer_path) if text_init else None,
    )
    model = get_peft_model(model, config)
    model.prompt_encoder.float()  # the few trainable vectors learn in fp32
    return model


def build_model(method: str, base_dir: str | Path, params: TrainParams):
    """Base + trainable adapter for `method`; the base stays frozen."""
    if method == "qlora":
        return add_lora(models.load_base(base_dir, quantize_4bit=True, for_training=True), params)
    if method == "prompt_tuning":
        _, path = bases.read_manifest(base_dir)
        return add_soft_prompt(models.load_base(base_dir, for_training=True), params, path)
    raise ValueError(f"unknown method {method!r}")


def count_params(model) -> tuple[int, int]:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    # 4-bit weights are packed two to a byte
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    total = sum(p.numel() * (2 if p.dtype == torch.uint8 else 1) for p in base.parameters())
    return trainable, total
