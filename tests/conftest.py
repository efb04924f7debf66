"""Shared fixtures: params, the real SmolLM2 tokenizer, and a tiny random Llama built from a config."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def params():
    from supportagent.config import load_params

    return load_params(ROOT / "params.yaml")


@pytest.fixture(scope="session")
def tokenizer_dir(tmp_path_factory) -> Path:
    """The embedded model's tokenizer (from the GGUF, ~40 s once per session)."""
    from transformers import AutoTokenizer

    from supportagent.model import bases

    built = ROOT / "models/base/hf"
    if (built / "tokenizer.json").exists():
        return built
    out = tmp_path_factory.mktemp("tokenizer")
    tok = AutoTokenizer.from_pretrained(bases.package_dir(bases.EMBEDDED_PACKAGE), gguf_file=bases.EMBEDDED_GGUF)
    bases.fix_special_tokens(tok)
    tok.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tokenizer(tokenizer_dir):
    from transformers import AutoTokenizer

    from supportagent.model import bases

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    bases.fix_special_tokens(tok)
    return tok


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory, tokenizer) -> Path:
    """A base-model folder (manifest + safetensors) holding a 2-layer random Llama with the real tokenizer."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("tiny_base")
    hf = root / "hf"
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                         tie_word_embeddings=True, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id)
    LlamaForCausalLM(config).save_pretrained(hf, safe_serialization=True)
    tokenizer.save_pretrained(hf)
    (root / "manifest.json").write_text(json.dumps({"base": "tiny-random-llama", "source": "gguf", "path": "hf"}))
    return root


def make_tiny_pairs():
    import pandas as pd

    rows = []
    brands = ["SpotifyCares", "AmazonHelp"]
    for i in range(24):
        brand = brands[i % 2]
        rows.append(
            {
                "pair_id": i,
                "conversation_id": i // 4 * 4 + i % 2,
                "brand": brand,
                "created_at": None,
                "context": "",
                "customer": f"my playlist number {i} vanished, please help"
                if brand == "SpotifyCares"
                else f"where is my order {i}? it is late",
                "reply": f"Sorry about playlist {i}! DM us and we'll take a look."
                if brand == "SpotifyCares"
                else f"We're sorry for the delay of order {i}. Please DM us your order details.",
            }
        )
    return pd.DataFrame(rows)


@pytest.fixture
def tiny_pairs():
    """24 pairs of two brands; each conversation holds two pairs of one brand."""
    return make_tiny_pairs()


@pytest.fixture(scope="session")
def embedder():
    from supportagent.model import models

    return models.load_embedder()


@pytest.fixture(scope="session")
def tiny_index(tmp_path_factory, embedder) -> Path:
    """The embedding index of `tiny_pairs`, built by the `index` stage's code with the real MiniLM."""
    from supportagent.model import models
    from supportagent.data.retrieval import build_index

    out = tmp_path_factory.mktemp("index")
    build_index(make_tiny_pairs(), embedder, out, models.embedder_id())
    return out


def tiny_system(params, tiny_base, system: str):
    """The tiny random base, alone (`base`) or behind a random 4-vector soft prompt (`soft_prompt`)."""
    import torch

    from supportagent.model import models

    model = models.load_base(tiny_base)
    if system == "soft_prompt":
        from supportagent.model.methods.prompt_tuning import add_soft_prompt

        tp = params.train.prompt_tuning.model_copy(update={"prompt_init": "random", "num_virtual_tokens": 4})
        torch.manual_seed(0)
        model = add_soft_prompt(model, tp)
    return model


@pytest.fixture
def fp32(monkeypatch):
    """Pins the compute dtype to float32, for a test that compares two code paths exactly or to a float32 tolerance:
    `runtime.compute_dtype` picks bf16 on a CPU with AMX (or under SUPPORTAGENT_DTYPE=bfloat16, as `make
    test-dtypes` runs the numeric tests), where two kernels round differently."""
    monkeypatch.setenv("SUPPORTAGENT_DTYPE", "float32")
