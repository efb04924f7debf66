"""The trainable methods, one module each: a module of this package that defines `METHOD` is a method.

Adding a method takes three files: its params class and `train.<name>` field in config.py's `TrainGroup` (the
list of methods, `config.METHODS`, is that group's fields), its module here, and its `train.<name>` block in
params.yaml. dvc.yaml trains and evaluates every key of params' `train`; the CLI, the comparison, the plots and
the README iterate `config.METHODS`."""
from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path


@dataclass(frozen=True)
class Method:
    name: str
    # the trainable adapter on the loaded frozen base: (base model, the method's params, the base's folder) -> model
    add: Callable
    quantized_base: bool = False  # the frozen base is loaded in 4-bit NF4, for training and serving alike
    cuda_optimizer: str = "adamw_torch"  # the Trainer's `optim` on a GPU (the CPU always takes adamw_torch)


def set_checkpointing(model, every_n_layers: int) -> None:
    """Gradient checkpointing of every n-th decoder layer (1 = all, 0 = off): the checkpointed layers
    recompute their activations in the backward pass, trading compute for activation memory."""
    if every_n_layers:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False},
                                            every_n_layers=every_n_layers)
    elif getattr(model, "is_gradient_checkpointing", False):
        model.gradient_checkpointing_disable()


@cache
def registry() -> dict[str, Method]:
    """Every method of this package by name."""
    found = {}
    for info in pkgutil.iter_modules([str(Path(__file__).parent)]):
        method = getattr(importlib.import_module(f"{__name__}.{info.name}"), "METHOD", None)
        if isinstance(method, Method):
            found[method.name] = method
    return found


def get(name: str) -> Method:
    methods = registry()
    if name not in methods:
        raise ValueError(f"no method {name!r} in src/supportagent/model/methods/ "
                         f"(methods: {', '.join(sorted(methods))})")
    return methods[name]
