import json
import math

import pandas as pd
import pytest
import torch
from transformers import TrainerCallback

from supportagent import runtime
from supportagent.errors import ModelError
from supportagent.inference.generation import Generator, load_system
from supportagent.inference.serving import fold_4bit
from supportagent.model import bases, models
from supportagent.model.adapters import build_model
from supportagent.model.training import PadCollator, train
from supportagent.model.trainlog import log_file

pytestmark = pytest.mark.numeric  # run again under the other dtype by `make test-dtypes`


def _tp(params, method, **kw):
    # 24 pairs at batch 4: 6 steps an epoch, so a validation and a checkpoint every 2 steps, a log every step
    base = dict(
        max_steps=4, batch_size=4, evals_per_epoch=3, saves_per_epoch=3, logs_per_epoch=6, max_val_pairs=4, lr=5e-3
    )
    return getattr(params.train, method).model_copy(update={**base, **kw})


def _train(params, method, tiny_base, tiny_pairs, tmp_path, callbacks=(), index=None, **kw):
    return train(method, tiny_pairs, tiny_pairs.head(4), tiny_base, index, tmp_path / method, _tp(params, method, **kw),
                 params.model, params.rules, params.retrieval.model_copy(update={"k": 2 if index else 0}), params.seed,
                 tmp_path / "logs" / method, checkpoint_root=tmp_path / "ckpt", callbacks=callbacks)


class CountEvaluations(TrainerCallback):
    def __init__(self):
        self.steps = []

    def on_evaluate(self, args, state, control, **kw):
        self.steps.append(state.global_step)


@pytest.mark.parametrize("method", ["qlora", "prompt_tuning"])
def test_training_writes_adapter_metrics_and_curves(params, tiny_base, tiny_pairs, tiny_index, tmp_path, method):
    m = _train(params, method, tiny_base, tiny_pairs, tmp_path, index=tiny_index)  # with retrieved examples
    out = tmp_path / method
    assert (out / "adapter_model.safetensors").exists() and (out / "adapter_config.json").exists()
    assert m["steps"] == 4 and m["adapter_mb"] > 0 and 0 < m["trainable_percent"] < 100
    assert m["final_val_loss"] is not None and m["tokens_per_second"] > 0
    curve = pd.read_csv(log_file(tmp_path / "logs" / method, "train/loss"), sep="\t")
    assert list(curve.columns) == ["step", "loss"] and curve["step"].tolist() == [1, 2, 3, 4]
    assert m["final_train_loss"] == round(curve["loss"].iloc[-1], 4)
    info = json.loads((out / "training_info.json").read_text())
    assert info["base_manifest"]["base"] == "tiny-random-llama"


@pytest.mark.parametrize("method", ["qlora", "prompt_tuning"])
def test_the_same_training_writes_the_same_adapter_folder(params, tiny_base, tiny_pairs, tmp_path, method):
    """The adapter's folder is a DVC output: two runs that train the same weights must write the same bytes, so that
    DVC sees the same hash (and the stages after it stay up to date). The run's timings go to its metrics only."""
    first = _train(params, method, tiny_base, tiny_pairs, tmp_path / "a")
    second = _train(params, method, tiny_base, tiny_pairs, tmp_path / "b")
    files = sorted(f.name for f in (tmp_path / "a" / method).iterdir())
    assert files == sorted(f.name for f in (tmp_path / "b" / method).iterdir())
    for name in files:
        assert (tmp_path / "a" / method / name).read_bytes() == (tmp_path / "b" / method / name).read_bytes(), name
    info = json.loads((tmp_path / "a" / method / "training_info.json").read_text())["metrics"]
    assert "train_seconds" not in info and first["train_seconds"] > 0 and second["train_seconds"] > 0
    if method == "qlora":  # peft holds them as a set, whose order changes with each process's string hashing
        modules = json.loads((tmp_path / "a" / method / "adapter_config.json").read_text())["target_modules"]
        assert modules == sorted(modules)


@pytest.mark.parametrize("method", ["qlora", "prompt_tuning"])
def test_bf16_training_saves_fp32_adapters_that_serve_in_fp32(
    params, tiny_base, tiny_pairs, tmp_path, method, monkeypatch
):
    """Mixed precision: the frozen base computes in bf16 (`runtime.compute_dtype(training=True)` on CPUs with fast
    bf16), the trained weights stay fp32, so the adapter loads into the fp32 serving base unchanged."""
    from safetensors.torch import load_file

    monkeypatch.setenv("SUPPORTAGENT_DTYPE", "bfloat16")
    m = _train(params, method, tiny_base, tiny_pairs, tmp_path)
    assert m["dtype"] == "bfloat16" and math.isfinite(m["final_val_loss"])
    weights = load_file(tmp_path / method / "adapter_model.safetensors")
    assert weights and {t.dtype for t in weights.values()} == {torch.float32}


def test_final_val_loss_reuses_the_evaluation_at_the_last_step(params, tiny_base, tiny_pairs, tmp_path):
    counted = CountEvaluations()
    m = _train(params, "prompt_tuning", tiny_base, tiny_pairs, tmp_path, callbacks=(counted,), max_steps=5,
               evals_per_epoch=2)
    assert counted.steps == [3, 5]  # at mid-epoch (step 3 of 6), and at the end: no second pass for the final loss
    val = pd.read_csv(log_file(tmp_path / "logs" / "prompt_tuning", "eval/loss"), sep="\t")
    assert val["step"].tolist() == [3, 5] and m["final_val_loss"] == round(val["loss"].iloc[-1], 4)


def test_soft_prompt_loss_is_the_same_inside_ddp(params, tiny_base, tokenizer, tmp_path):
    """Under `accelerate launch` the Trainer hands compute_loss a DistributedDataParallel wrapper; the
    loss must still skip the soft prompt's positions (it once did not, and DDP prompt tuning diverged)."""
    from torch.nn.parallel import DistributedDataParallel
    from transformers import TrainingArguments

    from supportagent.model.training import _trainer_class

    model = build_model("prompt_tuning", tiny_base, params.train.prompt_tuning)
    ids = tokenizer(["where is my order?", "my playlist vanished"], padding=True, return_tensors="pt")
    batch = PadCollator(tokenizer.pad_token_id)([{"input_ids": x, "labels": x} for x in ids["input_ids"].tolist()])
    batch["labels"][:, :2] = -100  # a prompt: only the reply is learned
    trainer = _trainer_class()(
        model=model, args=TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to="none")
    )
    expected = model(**batch).loss.item()  # peft's own loss, which knows the virtual tokens
    torch.distributed.init_process_group("gloo", init_method=f"file://{tmp_path}/pg", rank=0, world_size=1)
    try:
        wrapped = trainer.compute_loss(DistributedDataParallel(model), batch).item()
    finally:
        torch.distributed.destroy_process_group()
    assert trainer.compute_loss(model, batch).item() == pytest.approx(expected, rel=1e-5)
    assert wrapped == pytest.approx(expected, rel=1e-5)


def test_qlora_uses_4bit_base_and_trains_only_lora(params, tiny_base, tokenizer):
    import bitsandbytes as bnb

    model = build_model("qlora", tiny_base, params.train.qlora)
    layers = [m for m in model.modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert layers and all(not m.support_avx512bf16_for_cpu for m in layers)
    assert layers[0].weight.quant_state.quant_type == "nf4"
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)


def _lora_grad_norm(model, batch):
    model.zero_grad()
    model.train()
    model(**batch).loss.backward()
    return torch.sqrt(sum(p.grad.float().pow(2).sum() for p in model.parameters() if p.grad is not None)).item()


def test_gradients_survive_a_validation_pass(params, tiny_base, tokenizer, tiny_pairs):
    """bitsandbytes 0.50 repacks 4-bit weights on a no-grad eval forward on CPU, after which gradients
    are silently wrong; build_model must prevent it."""
    model = build_model("qlora", tiny_base, params.train.qlora.model_copy(update={"lora_dropout": 0.0}))
    for name, p in model.named_parameters():  # make LoRA B non-zero so that A receives gradient too
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.02)
    ids = tokenizer(["where is my order?", "my playlist vanished"], padding=True, return_tensors="pt")
    batch = PadCollator(tokenizer.pad_token_id)([{"input_ids": x, "labels": x} for x in ids["input_ids"].tolist()])
    before = _lora_grad_norm(model, batch)
    model.eval()
    with torch.no_grad():
        model(**batch)  # the validation pass
    after = _lora_grad_norm(model, batch)
    assert before > 0 and after == pytest.approx(before, rel=1e-3)


@pytest.mark.parametrize("every_n", [1, 2])
def test_checkpointing_keeps_gradients_and_recomputes(params, tiny_base, tokenizer, every_n):
    """Gradient checkpointing (all or every n-th layer) must give the same LoRA gradients as none."""
    p = params.train.qlora.model_copy(update={"lora_dropout": 0.0})
    ids = tokenizer(["where is my order?", "my playlist vanished"], padding=True, return_tensors="pt")
    batch = PadCollator(tokenizer.pad_token_id)([{"input_ids": x, "labels": x} for x in ids["input_ids"].tolist()])
    norms = []
    for n in (0, every_n):
        torch.manual_seed(0)
        model = build_model("qlora", tiny_base, p.model_copy(update={"checkpoint_every_n_layers": n}))
        for name, w in model.named_parameters():
            if "lora_B" in name:
                torch.nn.init.normal_(w, std=0.02)
        layers = model.get_base_model().model.layers
        flags = [bool(getattr(layer, "gradient_checkpointing", False)) for layer in layers]
        assert any(flags) == bool(n) and (n != 1 or all(flags))
        norms.append(_lora_grad_norm(model, batch))
    assert norms[0] > 0 and norms[1] == pytest.approx(norms[0], rel=1e-4)


class _Interrupt(TrainerCallback):
    def on_step_end(self, args, state, control, **kw):
        if state.global_step == 3:
            raise KeyboardInterrupt


def test_interrupted_run_resumes_from_checkpoint(params, tiny_base, tiny_pairs, tmp_path):
    tp = _tp(params, "prompt_tuning", max_steps=6)
    common = dict(base_dir=tiny_base, index_dir=None, out_dir=tmp_path / "pt", params=tp, model_params=params.model,
                  rules_params=params.rules, retrieval=params.retrieval.model_copy(update={"k": 0}), seed=params.seed,
                  log_dir=tmp_path / "logs", checkpoint_root=tmp_path / "ckpt")
    with pytest.raises(KeyboardInterrupt):
        train("prompt_tuning", tiny_pairs, tiny_pairs.head(4), callbacks=(_Interrupt(),), **common)
    assert (tmp_path / "ckpt/prompt_tuning/checkpoint-2").exists()
    m = train("prompt_tuning", tiny_pairs, tiny_pairs.head(4), **common)
    assert m["resumed_from"] == "checkpoint-2" and m["steps"] == 6
    curve = pd.read_csv(log_file(tmp_path / "logs", "train/loss"), sep="\t")
    assert curve["step"].max() == 6 and 3 in curve["step"].tolist()  # steps 1-3, then 3-6 again after resuming
    assert not (tmp_path / "ckpt/prompt_tuning").exists()  # finished runs leave nothing to resume


def test_changed_params_do_not_resume_stale_checkpoints(params, tiny_base, tiny_pairs, tmp_path):
    common = dict(base_dir=tiny_base, index_dir=None, out_dir=tmp_path / "pt", model_params=params.model,
                  rules_params=params.rules, retrieval=params.retrieval.model_copy(update={"k": 0}), seed=params.seed,
                  log_dir=tmp_path / "logs", checkpoint_root=tmp_path / "ckpt")
    with pytest.raises(KeyboardInterrupt):
        train("prompt_tuning", tiny_pairs, tiny_pairs.head(4), params=_tp(params, "prompt_tuning", max_steps=6),
              callbacks=(_Interrupt(),), **common)
    m = train(
        "prompt_tuning",
        tiny_pairs,
        tiny_pairs.head(4),
        params=_tp(params, "prompt_tuning", max_steps=6, lr=1e-3),
        **common,
    )
    assert m["resumed_from"] is None


def test_soft_prompt_generation_matches_peft_forward(params, tiny_base, tiny_pairs, tmp_path, tokenizer):
    _train(params, "prompt_tuning", tiny_base, tiny_pairs, tmp_path)
    model, tok = load_system("prompt_tuning", str(tiny_base), str(tmp_path / "prompt_tuning"))
    prompt = tok("where is my order?")["input_ids"]
    with torch.no_grad():
        logits = model(
            input_ids=torch.tensor([prompt]), attention_mask=torch.ones(1, len(prompt), dtype=torch.long)
        ).logits
    gen = Generator(model, tok, max_new_tokens=3, repetition_penalty=1.0)
    assert gen.soft_prompt is not None and gen.soft_prompt.shape[1] == params.train.prompt_tuning.num_virtual_tokens
    first = gen.generate([prompt])[0]
    expected = logits[0, -1].argmax().item()
    assert (first.token_ids[:1] or [tok.eos_token_id]) == [expected]


def test_serving_fold_computes_the_adapter_on_its_4bit_base(params, tiny_base, tiny_pairs, tmp_path, tokenizer, fp32):
    import bitsandbytes as bnb

    _train(params, "qlora", tiny_base, tiny_pairs, tmp_path)
    model, tok = load_system("qlora", str(tiny_base), str(tmp_path / "qlora"))
    for (
        m
    ) in model.modules():  # the reference: dequantise, then matmul (bitsandbytes' AVX512-BF16 kernel rounds in bf16)
        if isinstance(m, bnb.nn.Linear4bit):
            m.support_avx512bf16_for_cpu = False
    batch = {"input_ids": torch.tensor([tok("my parcel never arrived, please help")["input_ids"]])}
    with torch.no_grad():
        before = model(**batch).logits
        assert fold_4bit(model) == 14  # 7 linears x 2 layers
        after = model(**batch).logits
        plain = models.load_base(tiny_base)(**batch).logits  # the base without the adapter
    assert not any(isinstance(m, bnb.nn.Linear4bit) for m in model.modules())
    assert model.get_base_model().hf_quantizer is None  # nothing quantised left: compilable
    assert torch.allclose(before, after, atol=1e-4, rtol=0)
    assert (before - plain).abs().max() > 1e-3  # the trained adapter is part of what was folded


def test_left_padded_batches_equal_single_generation(tiny_base, tokenizer):
    model = models.load_base(tiny_base)
    gen = Generator(model, tokenizer, max_new_tokens=6, repetition_penalty=1.0)
    prompts = [tokenizer("hi")["input_ids"], tokenizer("where is my order, it is very late now")["input_ids"]]
    batched = [r.text for r in gen.generate(prompts)]
    single = [gen.generate([p])[0].text for p in prompts]
    assert batched == single


def test_gqa_attention_equals_transformers_sdpa_on_padded_batches(tiny_base, tokenizer, monkeypatch):
    monkeypatch.setenv("SUPPORTAGENT_DTYPE", "float32")  # the kernels compared, not the training dtype of this CPU
    assert runtime.attention_implementation() == runtime.GQA_ATTENTION  # generation
    assert runtime.attention_implementation(for_training=True) == "sdpa"
    fast, plain = models.load_base(tiny_base), models.load_base(tiny_base, for_training=True)
    assert fast.config._attn_implementation == runtime.GQA_ATTENTION and plain.config._attn_implementation == "sdpa"
    assert fast.config.num_key_value_heads < fast.config.num_attention_heads  # grouped-query attention
    prompts = [tokenizer("hi")["input_ids"], tokenizer("where is my order, it is very late now")["input_ids"]]
    replies = [
        [r.token_ids for r in Generator(m, tokenizer, max_new_tokens=8, repetition_penalty=1.0).generate(prompts)]
        for m in (fast, plain)
    ]
    assert replies[0] == replies[1]
    ids = torch.tensor([[tokenizer.pad_token_id] * 3 + prompts[0], prompts[1][:len(prompts[0]) + 3]])
    mask = (torch.arange(ids.shape[1]) >= torch.tensor([[3], [0]])).long()
    with torch.no_grad():
        a, b = (m(input_ids=ids, attention_mask=mask).logits for m in (fast, plain))
    assert torch.allclose(a[mask.bool()], b[mask.bool()], atol=1e-5)


def test_adapter_errors_are_clear(params, tiny_base, tiny_pairs, tmp_path):
    with pytest.raises(ModelError, match="dvc repro"):
        models.check_adapter(tmp_path / "missing", tiny_base)
    _train(params, "prompt_tuning", tiny_base, tiny_pairs, tmp_path)
    adapter = tmp_path / "prompt_tuning"
    other = tmp_path / "other_base"
    other.mkdir()
    (other / "manifest.json").write_text(
        json.dumps({"base": "another-model", "source": "local", "path": str(tiny_base / "hf")})
    )
    with pytest.raises(ModelError, match="trained on base tiny-random-llama"):
        models.check_adapter(adapter, other)
    (adapter / "adapter_model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ModelError, match="corrupted"):
        models.check_adapter(adapter, tiny_base)


def test_unavailable_hub_model_says_how_to_provide_it(tmp_path):
    with pytest.raises(ModelError, match="local Hugging Face cache.*embedded default"):
        bases.prepare_base("no-such-org/no-such-model-xyz", None, tmp_path)


def test_intervals_are_counts_per_epoch_that_survive_a_change_of_data_size(params):
    from supportagent.model.training import intervals

    q = params.train.qlora  # the default: 733 train pairs at batch 8 are 92 steps an epoch
    assert intervals(733, q) == {"eval": 46, "log": 2, "save": 15}
    assert intervals(7330, q)["eval"] == 458  # ten times the data: still twice an epoch
    assert intervals(733, params.train.prompt_tuning)["eval"] == 184  # batch 2: 367 steps an epoch
    assert intervals(3, q) == {"eval": 1, "log": 1, "save": 1}  # never zero
