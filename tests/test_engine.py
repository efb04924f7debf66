"""The decoding engines give the same greedy replies; the serving fold degrades, never breaks, without memory."""
import pytest
import torch

from conftest import tiny_system
from supportagent.inference.generation import CACHE_BUCKET, PREFILL_CHUNK, Generator, resolve_engine
from supportagent.model import models

pytestmark = pytest.mark.numeric  # run again under the other dtype by `make test-dtypes`

MESSAGES = ["hi", "where is my order, it is very late now", "my playlist vanished after the update",
            "I was charged twice for one ride, refund please", "the app crashes when I open it",
            "thanks, that fixed it!", "can I change the delivery address of my parcel?",
            "my account was hacked and the password no longer works, what do I do now?"]


def _prompts(tokenizer, n=32):
    """32 prompts of many lengths: each message alone and repeated, so that the compiled engine reads some in
    several chunks, and prompt and reply (8 tokens) cross a boundary of its cache lengths."""
    out = [tokenizer(" ".join([m] * (1 + 5 * (i // len(MESSAGES)))))["input_ids"] for i, m in
           enumerate(MESSAGES * (n // len(MESSAGES)))]
    chunks = lambda p: -(-len(p) // PREFILL_CHUNK) * PREFILL_CHUNK  # noqa: E731
    assert len({-(-(chunks(p) + 8) // CACHE_BUCKET) for p in out}) >= 2 and max(map(len, out)) > 2 * PREFILL_CHUNK
    return out


@pytest.mark.parametrize("system", ["base", "soft_prompt"])
@pytest.mark.parametrize("penalty", [1.0, 3.0])
def test_the_compiled_engine_gives_the_eager_replies(params, tiny_base, tokenizer, system, penalty):
    """On 32 fixed prompts, one at a time and in left-padded batches, with and without the repetition penalty
    (a strong one, so that a wrong set of penalised ids changes replies: transformers penalises the prompt ids,
    pads included, but behind a soft prompt only the generated ids):
    the compiled engine's own loop (static KV cache; on a CPU uncompiled, on a GPU the same step compiled)
    decodes exactly the tokens of transformers' generate(), its cache sized per prompt or for a longest prompt
    (`max_prompt_tokens`: shorter prompts in a longer cache, longer ones in their own)."""
    model = tiny_system(params, tiny_base, system)
    eager = Generator(model, tokenizer, max_new_tokens=8, repetition_penalty=penalty, engine="eager")
    static = Generator(model, tokenizer, max_new_tokens=8, repetition_penalty=penalty, engine="compiled")
    sized = Generator(model, tokenizer, max_new_tokens=8, repetition_penalty=penalty, engine="compiled",
                      max_prompt_tokens=2 * PREFILL_CHUNK)
    prompts = _prompts(tokenizer)
    reference = [r.token_ids for r in eager.generate(prompts)]
    assert len(set(map(tuple, reference))) > 4  # not one degenerate reply
    assert [r.token_ids for r in static.generate(prompts)] == reference
    assert [static.generate([p])[0].token_ids for p in prompts[:8]] == reference[:8]
    assert [r.token_ids for r in sized.generate(prompts)] == reference
    assert [sized.generate([p])[0].token_ids for p in prompts[:8]] == reference[:8]
    replies, _ = static.generate_all(prompts, batch_size=5, progress=False)
    assert [r.token_ids for r in replies] == reference
    held = [r.token_ids for r in static.generate(prompts[:6], min_new_tokens=8)]
    assert held == [r.token_ids for r in eager.generate(prompts[:6], min_new_tokens=8)]
    assert all(len(t) == 8 for t in held)


def test_auto_compiles_on_a_gpu_only_and_bad_engines_fail_by_name(tiny_base, tokenizer):
    assert resolve_engine("auto", torch.device("cuda", 0)) == "compiled"
    assert resolve_engine("auto", torch.device("cpu")) == "eager"
    with pytest.raises(ValueError, match="turbo"):
        Generator(models.load_base(tiny_base), tokenizer, engine="turbo")


def test_a_model_with_4bit_layers_decodes_eagerly_on_a_gpu(tiny_base, tokenizer):
    """torch.compile cannot compile bitsandbytes' 4-bit layers: without a (full) fold a GPU falls back to the
    eager engine and says so; a CPU, which compiles nothing, keeps the engine asked for."""
    from supportagent.inference.generation import _quantized
    from supportagent.inference.serving import fold_4bit

    cuda = torch.device("cuda", 0)
    with pytest.warns(UserWarning, match="4-bit layers"):
        assert resolve_engine("compiled", cuda, quantized=True) == "eager"
    with pytest.warns(UserWarning, match="fold_qlora"):
        assert resolve_engine("auto", cuda, quantized=True) == "eager"
    assert resolve_engine("compiled", torch.device("cpu"), quantized=True) == "compiled"
    model = models.load_base(tiny_base, quantize_4bit=True)
    assert _quantized(model)
    fold_4bit(model)
    assert not _quantized(model)


def test_an_empty_prompt_is_refused_with_a_clear_error(tiny_base, tokenizer):
    gen = Generator(models.load_base(tiny_base), tokenizer, max_new_tokens=2, engine="compiled")
    with pytest.raises(ValueError, match="at least one token"):
        gen.generate([tokenizer("hi")["input_ids"], []])


def test_min_new_tokens_gives_replies_of_exact_length(tiny_base, tokenizer):
    gen = Generator(models.load_base(tiny_base), tokenizer, max_new_tokens=6, repetition_penalty=1.0)
    replies = gen.generate(_prompts(tokenizer)[:4], min_new_tokens=6)
    assert all(len(r.token_ids) == 6 and r.truncated for r in replies)


def test_the_fold_stops_at_an_out_of_memory_and_keeps_the_replies(params, tiny_base, tokenizer, monkeypatch):
    """A GPU without room for all unquantised weights: the layers folded so far stay folded, the rest keep
    their 4-bit kernels, and the model answers as before."""
    import bitsandbytes as bnb

    from supportagent.inference.serving import fold_4bit

    model = models.load_base(tiny_base, quantize_4bit=True)
    gen = Generator(model, tokenizer, max_new_tokens=6, repetition_penalty=1.0)
    prompts = _prompts(tokenizer)[:4]
    before = [r.token_ids for r in gen.generate(prompts)]
    calls, real = [], bnb.functional.dequantize_4bit

    def dequantize(*args, **kwargs):
        calls.append(1)
        if len(calls) > 5:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return real(*args, **kwargs)

    monkeypatch.setattr(bnb.functional, "dequantize_4bit", dequantize)
    with pytest.warns(UserWarning, match="5 folded"):
        assert fold_4bit(model) == 5
    assert sum(isinstance(m, bnb.nn.Linear4bit) for m in model.modules()) == 14 - 5
    assert model.hf_quantizer is not None  # still partly quantised
    after = [r.token_ids for r in gen.generate(prompts)]
    assert after == before


def test_the_fold_after_a_4bit_forward_is_still_the_4bit_function(tiny_base, tokenizer, fp32):
    """On a CPU with AVX512-BF16, a no-grad forward repacks the 4-bit weights for bitsandbytes' CPU kernel; the
    fold must read them back as NF4 (it once dequantised the repacked layout: wrong weights, wrong replies).
    On other CPUs and on GPUs nothing is repacked and this checks the plain fold."""
    import bitsandbytes as bnb

    from supportagent.inference.serving import fold_4bit

    reference = models.load_base(tiny_base, quantize_4bit=True)
    for m in reference.modules():  # dequantise, then matmul: no repack (the AVX512-BF16 kernel rounds in bf16)
        if isinstance(m, bnb.nn.Linear4bit):
            m.support_avx512bf16_for_cpu = False
    model = models.load_base(tiny_base, quantize_4bit=True)
    ids = torch.tensor([_prompts(tokenizer)[1]])
    with torch.no_grad():
        model(input_ids=ids)  # repacks where the CPU has AVX512-BF16
        fold_4bit(model)
        # the repack keeps each block's scale in bf16, so the weights come back rounded (~1e-3 here); the
        # dequantised repacked layout was off by ~1 (logits of std 0.2)
        assert torch.allclose(model(input_ids=ids).logits, reference(input_ids=ids).logits, atol=3e-3, rtol=0)


@pytest.mark.parametrize("system", ["base", "soft_prompt"])
def test_every_prompt_width_up_to_max_prompt_tokens_shares_two_compiled_graphs(params, tiny_base, tokenizer,
                                                                                system):
    """What a GPU compiles, traced on a CPU (torch.compile's eager backend, the same graph capture and guards):
    prompts of one to five chunks, at batch 1 and 3, in a cache sized for the longest (`max_prompt_tokens`: one
    cache length, where sized per prompt they would need two), make two graphs per batch size (a chunk's forward
    and a decoding step's), not one per prompt width or cache length (a slice's strides, or a prompt's width in a
    shape, would make more), and decode what the uncompiled loop decodes."""
    from torch._dynamo.utils import counters

    model = tiny_system(params, tiny_base, system)
    prompts = [tokenizer(" ".join([m] * k))["input_ids"] for m, k in zip(MESSAGES[:3] + MESSAGES[-1:], (1, 8, 24, 17))]
    gen = Generator(model, tokenizer, max_new_tokens=4, repetition_penalty=1.3, engine="compiled",
                    max_prompt_tokens=max(map(len, prompts)))
    expected = [r.token_ids for r in gen.generate([tokenizer(m)["input_ids"] for m in MESSAGES])]
    assert sorted(-(-len(p) // PREFILL_CHUNK) for p in prompts) == [1, 2, 3, 5]
    per_prompt = Generator(model, tokenizer, max_new_tokens=4, engine="compiled").cache_length
    assert len({per_prompt(len(p)) for p in prompts}) == 2
    assert len({gen.cache_length(len(p)) for p in prompts}) == 1
    torch._dynamo.reset()
    counters.clear()
    gen._step = torch.compile(gen._step, fullgraph=True, dynamic=False, backend="eager")
    for batch in (1, 3):
        for p in prompts:
            gen.generate([p] * batch)
    assert counters["stats"]["unique_graphs"] == 4
    assert [r.token_ids for r in gen.generate([tokenizer(m)["input_ids"] for m in MESSAGES])] == expected


def test_after_a_servers_warm_up_its_greedy_batches_compile_nothing_new(params, tiny_base, tokenizer):
    """`evaluate.candidates: 0` on a GPU: a server's batches hold 1 to --max-batch messages. Its warm-up compiles one
    message and its largest batch (16), and every batch of 2 to 16 is then padded to 16, not to 2, 4 or 8 (each a
    compilation that the first request of that size would wait for), traced as the test above traces them; the
    replies are the uncompiled loop's."""
    from torch._dynamo.utils import counters

    gen = Generator(models.load_base(tiny_base), tokenizer, max_new_tokens=4, engine="compiled", max_prompt_tokens=32)
    prompts = [tokenizer(m)["input_ids"] for m in MESSAGES]
    expected = {n: [r.token_ids for r in gen.generate(prompts[:n])] for n in (1, 3, 5, 8)}
    torch._dynamo.reset()
    counters.clear()
    gen._step = torch.compile(gen._step, fullgraph=True, dynamic=False, backend="eager")
    gen.warm_up(prompts[:1], batch_size=16)
    assert counters["stats"]["unique_graphs"] == 4  # a chunk's and a step's graph, at batch 1 and 16
    assert {n: [r.token_ids for r in gen.generate(prompts[:n])] for n in expected} == expected
    assert counters["stats"]["unique_graphs"] == 4
