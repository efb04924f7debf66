"""A method's trainable adapter on its frozen base (the methods themselves: methods/), and the parameter counts."""
from __future__ import annotations

from pathlib import Path

import torch

from . import models
from ..config import TrainParams


def build_model(method: str, base_dir: str | Path, params: TrainParams):
    """Base + trainable adapter for `method` (methods/<method>.py); the base stays frozen."""
    from .methods import get

    m = get(method)
    return m.add(models.load_base(base_dir, quantize_4bit=m.quantized_base, for_training=True), params, base_dir)


def count_params(model) -> tuple[int, int]:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    # 4-bit weights are packed two to a byte
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    total = sum(p.numel() * (2 if p.dtype == torch.uint8 else 1) for p in base.parameters())
    return trainable, total
