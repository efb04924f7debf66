"""A local stand-in for Mistral-7B-Instruct-v0.3: its real tokenizer and chat format, its architecture, random weights.

For timing and code-path checks only: the weights are random, so it writes nonsense. `model.base: <folder>` runs
the whole pipeline on it exactly as on the real model (same tokenizer, same prompt tokens, same layer shapes).

The tokenizer is Mistral's v3 SentencePiece model shipped in `mistral-common` (Mistral AI's reference library),
converted to a Hugging Face tokenizer. Like the real one it has no pad token. `CHAT_TEMPLATE` renders the
v0.3 instruct format; tests/test_standin.py checks its token ids against `MistralTokenizer.encode_chat_completion`.
"""
from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import torch

from ..errors import ModelError
from .bases import package_dir

TOKENIZER_V3 = "mistral_instruct_tokenizer_240323.model.v3"  # in the mistral_common package's data folder
# mistralai/Mistral-7B-Instruct-v0.3's config.json
MISTRAL_7B_V03 = dict(vocab_size=32768, hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                      num_attention_heads=32, num_key_value_heads=8, head_dim=128, max_position_embeddings=32768,
                      rope_theta=1e6, rms_norm_eps=1e-5, sliding_window=None, tie_word_embeddings=False,
                      bos_token_id=1, eos_token_id=2)
# the same tokenizer and layer types at a width a CPU test trains in seconds
TINY = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
            head_dim=16)

# v0.3's instruct format (mistral-common, tokenizer v3): "<s>[INST] user[/INST] reply</s>[INST] user[/INST]"; the
# system prompt goes in front of the last user message, separated by a blank line
CHAT_TEMPLATE = (
    "{%- if messages[0]['role'] == 'system' %}"
    "{%- set system_message = messages[0]['content'] %}{%- set loop_messages = messages[1:] %}"
    "{%- else %}{%- set loop_messages = messages %}{%- endif %}"
    "{%- set last_user = (loop_messages | selectattr('role', 'equalto', 'user') | list | length) %}"
    "{{- bos_token }}"
    "{%- set ns = namespace(users=0) %}"
    "{%- for message in loop_messages %}"
    "{%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{- raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}"
    "{%- endif %}"
    "{%- if message['role'] == 'user' %}{%- set ns.users = ns.users + 1 %}"
    "{%- if ns.users == last_user and system_message is defined %}"
    "{{- '[INST] ' + system_message + '\\n\\n' + message['content'] + '[/INST]' }}"
    "{%- else %}{{- '[INST] ' + message['content'] + '[/INST]' }}{%- endif %}"
    "{%- else %}{{- ' ' + message['content'] + eos_token }}{%- endif %}"
    "{%- endfor %}"
)


def tokenizer_file() -> Path:
    try:
        return package_dir("mistral_common") / "data" / TOKENIZER_V3
    except ModelError:
        raise ModelError(
            "the stand-in needs Mistral's tokenizer from mistral-common: `make venv` installs it "
            "(pip install --no-deps mistral-common==1.13.1; sentencepiece and protobuf convert it)"
        ) from None


def load_v3_tokenizer():
    """Mistral's v3 tokenizer as a Hugging Face tokenizer with the v0.3 chat template; no pad token."""
    from transformers import AutoTokenizer

    with tempfile.TemporaryDirectory() as tmp:
        shutil.copy(tokenizer_file(), Path(tmp) / "tokenizer.model")
        (Path(tmp) / "tokenizer_config.json").write_text(json.dumps({
            "tokenizer_class": "LlamaTokenizer", "legacy": False, "add_bos_token": True, "add_eos_token": False,
            "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "clean_up_tokenization_spaces": False}))
        tok = AutoTokenizer.from_pretrained(tmp)
    tok.chat_template = CHAT_TEMPLATE
    tok.model_max_length = MISTRAL_7B_V03["max_position_embeddings"]
    return tok


def make_standin(out: str | Path, layers: int | None = None, tiny: bool = False, seed: int = 0,
                 tokenizer_from: str | Path | None = None) -> dict:
    """Write a Hugging Face folder: the v3 tokenizer and chat template, Mistral-7B-v0.3's config (`layers` decoder
    layers if given; `tiny`: a narrow model for CPU tests) and random bf16 weights, made on a GPU when there is one.
    `tokenizer_from`: take the converted tokenizer from a stand-in made before (a machine without mistral-common)."""
    from transformers import AutoTokenizer, GenerationConfig, MistralConfig, MistralForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_from) if tokenizer_from else load_v3_tokenizer()

    out = Path(out)
    arch = {**MISTRAL_7B_V03, **(TINY if tiny else {})}
    if layers:
        arch["num_hidden_layers"] = layers
    config = MistralConfig(**arch)
    torch.manual_seed(seed)
    with torch.device("cuda" if torch.cuda.is_available() else "cpu"):
        model = MistralForCausalLM._from_config(config, dtype=torch.bfloat16)
    model.generation_config = GenerationConfig(bos_token_id=1, eos_token_id=2)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True, max_shard_size="5GB")
    tokenizer.save_pretrained(out)
    info = {"what": "Mistral-7B-Instruct-v0.3 stand-in: real v3 tokenizer and chat format, random weights; for "
                    "timing and code-path checks only (it writes nonsense)",
            "tokenizer": f"mistral_common/data/{TOKENIZER_V3}", "layers": config.num_hidden_layers,
            "hidden_size": config.hidden_size, "params": sum(p.numel() for p in model.parameters()), "seed": seed}
    (out / "standin.json").write_text(json.dumps(info, indent=2) + "\n")
    return info
