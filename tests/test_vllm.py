"""vLLM as the decoding engine (vllm_engine.py). Where vLLM is not installed: `evaluate.engine: vllm` says how to
install it. In the vLLM environment (`make test-vllm`, which CI runs): greedy replies through vLLM against the
eager engine's on 32 prompts, for the embedded base with a QLoRA adapter folded into its 4-bit weights and behind a
soft prompt, both in fp32."""
import importlib.util
import os

import pytest
import torch

from supportagent.errors import ModelError

HAS_VLLM = importlib.util.find_spec("vllm") is not None
MESSAGES = [f"{what} (order {i})" for i, what in enumerate([
    "My package never arrived and the tracking has not moved in a week", "The app crashes every time I open it",
    "I was charged twice for the same ride", "How do I cancel my subscription?", "Thank you for the quick help!",
    "My burrito was cold and missing the guac", "I can't log in after the update", "Where is my refund?"] * 4)]


@pytest.mark.skipif(HAS_VLLM, reason="vLLM is installed here: the engine runs instead")
def test_the_vllm_engine_without_vllm_says_how_to_install_it(params, tiny_base, tokenizer):
    from supportagent.model import models
    from supportagent.inference.serving import ready_to_serve

    ev = params.evaluate.model_copy(update={"engine": "vllm", "candidates": 0})
    with pytest.raises(ModelError, match="make vllm"):
        ready_to_serve(models.load_base(tiny_base), tokenizer, ev)


@pytest.fixture(scope="module")
def embedded_base(tmp_path_factory):
    from supportagent.model import bases

    root = tmp_path_factory.mktemp("embedded")
    bases.prepare_base(bases.EMBEDDED, None, root)
    return root


def _system(base_dir, method: str):
    """The embedded base with a random adapter of `method`, as served: QLoRA folded into its 4-bit weights."""
    from supportagent.model import models
    from supportagent.config import load_params
    from supportagent.model.methods import get
    from supportagent.inference.serving import fold_4bit

    from conftest import ROOT

    p = getattr(load_params(ROOT / "params.yaml").train, method)
    if method == "prompt_tuning":
        p = p.model_copy(update={"prompt_init": "random"})
    torch.manual_seed(0)
    model = get(method).add(models.load_base(base_dir, quantize_4bit=get(method).quantized_base), p, base_dir)
    if method == "qlora":
        for name, w in model.named_parameters():
            if "lora_B" in name:  # LoRA starts as the identity: a trained adapter's B is not zero
                w.data.normal_(0, 0.02)
        fold_4bit(model)
    return model.eval()


@pytest.mark.slow
@pytest.mark.skipif(not HAS_VLLM, reason="vLLM is not installed: `make test-vllm` runs this in .venv-vllm")
@pytest.mark.parametrize("method", ["qlora", "prompt_tuning"])
def test_vllm_greedy_replies_equal_the_eager_engines(embedded_base, method, monkeypatch, tmp_path):
    from supportagent.model import models
    from supportagent.config import load_params
    from supportagent.inference.generation import Generator
    from supportagent.inference.vllm_engine import VllmGenerator

    from conftest import ROOT

    monkeypatch.setenv("SUPPORTAGENT_DTYPE", "float32")
    monkeypatch.setenv("VLLM_ENABLE_V1_MULTIPROCESSING", os.environ.get("VLLM_ENABLE_V1_MULTIPROCESSING", "0"))
    tok = models.load_tokenizer(embedded_base)
    prompts = [tok.apply_chat_template([{"role": "user", "content": m}], add_generation_prompt=True, tokenize=True,
                                       return_dict=False) for m in MESSAGES]
    model = _system(embedded_base, method)
    penalty = load_params(ROOT / "params.yaml").evaluate.repetition_penalty
    eager = Generator(model, tok, max_new_tokens=24, repetition_penalty=penalty, engine="eager").generate(prompts)
    engine = VllmGenerator(model, tok, max_new_tokens=24, repetition_penalty=penalty, max_prompt_tokens=128,
                           workdir=tmp_path)
    assert not list(tmp_path.iterdir())  # the exported checkpoint is gone once vLLM has loaded it
    got = engine.generate(prompts)
    same = sum(a.token_ids == b.token_ids for a, b in zip(eager, got))
    print(f"{method}: {same} of {len(prompts)} greedy replies equal")
    assert same >= 30, [(a.text, b.text) for a, b in zip(eager, got) if a.token_ids != b.token_ids]
    draws = lambda: engine.sample(prompts, 5, 0.7, 0.95, torch.Generator().manual_seed(0), greedy_first=True)  # noqa
    first, again = draws(), draws()
    assert [[c.token_ids for c in pool] for pool in first] == [[c.token_ids for c in pool] for pool in again]
    assert [pool[0].token_ids for pool in first] == [r.token_ids for r in got]  # the greedy reply leads each pool
    # evaluate.rerank_likelihood_weight: the same pools, each member's likelihood read by the model vLLM was made from
    pools, scores = engine.sample_scored(prompts, 5, 0.7, 0.95, torch.Generator().manual_seed(0),
                                         [["Happy to help!"]] * len(prompts))
    assert [[c.token_ids for c in pool] for pool in pools] == [[c.token_ids for c in pool] for pool in first]
    reader = Generator(model, tok, max_new_tokens=24)
    for prompt, pool, got_scores in list(zip(prompts, pools, scores))[:3]:
        want = reader.likelihoods(prompt, [c.text for c in pool] + ["Happy to help!"])
        assert got_scores == pytest.approx(want, abs=1e-4)
    del engine


@pytest.mark.slow
@pytest.mark.skipif(not HAS_VLLM, reason="vLLM is not installed: `make test-vllm` runs this in .venv-vllm")
def test_the_server_over_vllm_answers_concurrent_requests_through_one_engine_loop(embedded_base, monkeypatch,
                                                                                   tmp_path):
    """`serve --engine vllm`'s path: the model thread steps vLLM's engine (`serve_forever`) while batches of
    concurrent HTTP requests add their prompts to it from other threads; each request gets the greedy reply of its
    own message, the same as when the engine answers it alone."""
    from concurrent.futures import ThreadPoolExecutor
    from dataclasses import dataclass

    import httpx
    from test_server import live

    from supportagent.model import models
    from supportagent.app.server import Limits, create_app, model_thread
    from supportagent.inference.vllm_engine import VllmGenerator

    monkeypatch.setenv("SUPPORTAGENT_DTYPE", "float32")
    monkeypatch.setenv("VLLM_ENABLE_V1_MULTIPROCESSING", os.environ.get("VLLM_ENABLE_V1_MULTIPROCESSING", "0"))
    tok = models.load_tokenizer(embedded_base)
    ids = {m: tok.apply_chat_template([{"role": "user", "content": m}], add_generation_prompt=True, tokenize=True,
                                      return_dict=False) for m in MESSAGES[:16]}
    thread, engine = model_thread(lambda: VllmGenerator(_system(embedded_base, "qlora"), tok, max_new_tokens=24,
                                                        max_prompt_tokens=128, workdir=tmp_path))
    alone = {m: r.text for m, r in zip(ids, thread.submit(engine.generate, list(ids.values())).result())}

    @dataclass
    class Answer:
        reply: str

        def to_dict(self):
            return {"reply": self.reply}

    calls = []
    answer = lambda items: calls.append(len(items)) or [  # noqa: E731
        Answer(r.text) for r in engine.generate([ids[it["text"]] for it in items])]
    loop = thread.submit(engine.serve_forever)
    limits = Limits(max_batch=2, in_flight=8)
    try:
        with live(create_app(answer, "qlora", None, tmp_path / "r.csv", limits=limits,
                             executor=ThreadPoolExecutor(8))) as url, ThreadPoolExecutor(16) as pool:
            got = list(pool.map(lambda m: httpx.post(f"{url}/v1/reply", json={"text": m}, timeout=120).json(), ids))
    finally:
        engine.stop()
    loop.result(timeout=60)
    assert len(calls) > 1 and max(calls) <= 2  # several batches, fed to the one engine loop at once
    same = sum(g["reply"] == alone[m] for g, m in zip(got, ids))
    print(f"{same} of {len(ids)} replies equal to the message's reply alone")
    assert same >= 15, [(g["reply"], alone[m]) for g, m in zip(got, ids) if g["reply"] != alone[m]]
