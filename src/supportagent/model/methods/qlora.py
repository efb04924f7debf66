"""QLoRA: LoRA adapters on the frozen base quantised to 4-bit NF4."""
from __future__ import annotations

import torch

from . import Method, set_checkpointing
from ... import runtime
from ...config import QLoraParams


def add_lora(model, params: QLoraParams, base_dir=None):
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


METHOD = Method("qlora", add=add_lora, quantized_base=True, cuda_optimizer="paged_adamw_8bit")
