"""Prompt tuning: a trainable soft prompt in front of the frozen 16-bit base."""
from __future__ import annotations

from pathlib import Path

from . import Method, set_checkpointing
from .. import bases
from ...config import PromptTuningParams


def add_soft_prompt(model, params: PromptTuningParams, tokenizer_path: str | Path | None = None):
    """A trainable soft prompt (prompt tuning) in front of a frozen 16-bit base; `tokenizer_path` for a prompt
    initialised from text."""
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


def _add(model, params: PromptTuningParams, base_dir):
    return add_soft_prompt(model, params, bases.read_manifest(base_dir)[1])


METHOD = Method("prompt_tuning", add=_add)
