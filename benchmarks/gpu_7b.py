"""QLoRA and prompt tuning at the seed's scale: a Mistral-7B-architecture model with random weights.

No 7B weights can be fetched here, and speed and memory do not depend on their values. The model is
built on the GPU in bf16, trained with prompt tuning (bf16 base), then its linear layers are
quantised in place to NF4 with double quantisation and trained with LoRA (the project's
`methods.qlora.add_lora` / `methods.prompt_tuning.add_soft_prompt`, `reply_loss` and `generation.Generator`). Every
configuration records tokens/s, peak GPU memory, MFU and HFU; serving records latency p50/p95 at
batch size 1 and replies/s batched.

    python benchmarks/gpu_7b.py --out bench_7b.json
    NCCL_NVLS_ENABLE=0 torchrun --nproc_per_node 2 benchmarks/gpu_7b.py --out ddp.json --pt --qlora 16:1:0

Under torchrun each process drives one GPU and the model is wrapped in DistributedDataParallel
(gradients of the trainable parameters all-reduced over NCCL; the frozen base is neither broadcast
nor synchronised); tokens/s counts all GPUs, the batch is per GPU, serving is skipped.

MFU counts model FLOPs per trained token as 2 x (forward + input-gradient backward) over the matmul
parameters plus causal attention; the frozen base computes no weight gradients. HFU adds the forward
recompute of checkpointed layers. Peak is measured against `--peak-tflops` (the H100's measured
bf16 dense rate).
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import time

import torch

from supportagent.reporting import records

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"  # cpu: only the --tiny smoke test
TINY = dict(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2)
MISTRAL_7B = dict(vocab_size=32768, hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                  num_attention_heads=32, num_key_value_heads=8, max_position_embeddings=32768,
                  rope_theta=1e6, tie_word_embeddings=False)


def init_distributed() -> int:
    """Under torchrun (WORLD_SIZE > 1): one process per GPU (its LOCAL_RANK), NCCL (gloo on a CPU).
    Returns the number of processes."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1:
        if DEVICE == "cuda":
            torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
        torch.distributed.init_process_group("nccl" if DEVICE == "cuda" else "gloo")
    return world


def world_size() -> int:
    return torch.distributed.get_world_size() if torch.distributed.is_initialized() else 1


def all_max(x: float) -> float:
    """The largest value over all processes (the slowest rank's time, the fullest GPU's memory)."""
    if world_size() == 1:
        return x
    t = torch.tensor([x], dtype=torch.float64, device=DEVICE)
    torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
    return float(t)


def data_parallel(model):
    """DistributedDataParallel over the trainable parameters only: the frozen (4-bit) base is the
    same on every rank (same seed), so it is neither broadcast at the start nor synchronised."""
    if world_size() == 1:
        return model
    from torch.nn.parallel import DistributedDataParallel

    model._ddp_params_and_buffers_to_ignore = [n for n, p in model.named_parameters() if not p.requires_grad] + \
        [n for n, _ in model.named_buffers()]
    return DistributedDataParallel(model, device_ids=[torch.cuda.current_device()] if DEVICE == "cuda" else None)


def sync() -> None:
    if DEVICE == "cuda":
        torch.cuda.synchronize()


def free() -> None:
    gc.collect()
    if DEVICE == "cuda":
        torch.cuda.empty_cache()


def build_bf16(arch: dict):
    from transformers import MistralConfig, MistralForCausalLM

    cfg = MistralConfig(**arch)
    cfg._attn_implementation = "sdpa"
    torch.manual_seed(0)
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)
    try:
        with torch.device(DEVICE):
            model = MistralForCausalLM(cfg)
    finally:
        torch.set_default_dtype(default)
    model.generation_config.eos_token_id = None
    model.generation_config.pad_token_id = 0
    return model


def quantize_nf4_(model) -> None:
    """Replace every linear layer of the decoder (not lm_head) by an NF4 double-quantised Linear4bit."""
    import bitsandbytes as bnb

    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, torch.nn.Linear) and name != "lm_head":
                q = bnb.nn.Linear4bit(child.in_features, child.out_features, bias=child.bias is not None,
                                      compute_dtype=torch.bfloat16, compress_statistics=True, quant_type="nf4",
                                      device="meta")
                q.weight = bnb.nn.Params4bit(child.weight.data, requires_grad=False, compress_statistics=True,
                                             quant_type="nf4").to(DEVICE)
                setattr(parent, name, q)
                del child
    model.is_loaded_in_4bit = True
    free()


def matmul_params(model) -> int:
    """Parameters that take part in matmuls per token (all linear layers incl. lm_head; not the embedding)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    cfg = base.config
    h, f, kv = (
        cfg.hidden_size,
        cfg.intermediate_size,
        cfg.num_key_value_heads * (cfg.hidden_size // cfg.num_attention_heads),
    )
    per_layer = h * h * 2 + h * kv * 2 + 3 * h * f
    return cfg.num_hidden_layers * per_layer + cfg.vocab_size * h


def flops_per_token(model, seq: int, recompute_share: float) -> tuple[float, float]:
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    cfg = base.config
    fwd = 2 * matmul_params(model) + 2 * cfg.num_hidden_layers * seq * cfg.hidden_size  # causal attention
    model_flops = 2 * fwd  # forward + input-gradient backward
    return model_flops, model_flops + recompute_share * (fwd - 2 * cfg.vocab_size * cfg.hidden_size)


def train_speed(model, batch: int, seq: int, steps: int, warmup: int, n_virtual: int, optimizer: str,
                every_n: int, peak_tflops: float) -> dict:
    from supportagent.model.training import reply_loss

    params = [p for p in model.parameters() if p.requires_grad]
    if optimizer == "paged_adamw_8bit" and DEVICE == "cuda":
        import bitsandbytes as bnb
        opt = bnb.optim.PagedAdamW8bit(params, lr=1e-4)
    else:
        opt = torch.optim.AdamW(params, lr=1e-4)
    vocab = (model.get_base_model() if hasattr(model, "get_base_model") else model).config.vocab_size
    ids = torch.randint(3, vocab, (batch, seq), device=DEVICE)
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids}
    model.train()
    net, gpus = data_parallel(model), world_size()
    free()
    if DEVICE == "cuda":
        torch.cuda.reset_peak_memory_stats()
    for i in range(warmup + steps):
        if i == warmup:
            sync()
            start = time.perf_counter()
        with torch.autocast(DEVICE, dtype=torch.bfloat16):
            loss = reply_loss(net, inputs, n_virtual)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    sync()
    seconds = all_max(time.perf_counter() - start)
    tps = gpus * batch * seq * steps / seconds  # all GPUs together; batch is per GPU
    share = (1 / every_n) if every_n else 0.0
    model_flops, hw_flops = flops_per_token(model, seq, share)
    peak = all_max(torch.cuda.max_memory_allocated() / 2**30) if DEVICE == "cuda" else None
    out = {"gpus": gpus, "tokens_per_second": round(tps, 1), "tokens_per_second_per_gpu": round(tps / gpus, 1),
           "step_seconds": round(seconds / steps, 4),
           "peak_memory_gib": round(peak, 2) if peak is not None else None,  # the fullest GPU's
           "mfu": round(tps * model_flops / (gpus * peak_tflops * 1e12), 4),
           "hfu": round(tps * hw_flops / (gpus * peak_tflops * 1e12), 4), "loss": round(float(loss), 3)}
    del opt, params, net
    model.zero_grad(set_to_none=True)
    return out


class _StubTokenizer:
    """Random-weight models decode no text: fixed-length replies (no end token), ids only."""
    pad_token_id = 0
    eos_token_id = None

    def decode(self, ids, skip_special_tokens=True):
        return ""


def serve_speed(model, prompt_len: int, new_tokens: int, batch: int, samples: int, soft_prompt=None) -> dict:
    from supportagent.inference.generation import Generator

    gen = Generator(model, _StubTokenizer(), max_new_tokens=new_tokens, repetition_penalty=1.0)
    if soft_prompt is not None:
        gen.soft_prompt = soft_prompt
    vocab = gen.model.config.vocab_size
    g = torch.Generator().manual_seed(0)
    prompts = [torch.randint(3, vocab, (prompt_len,), generator=g).tolist() for _ in range(max(batch, samples))]
    _, latency = gen.timed(prompts[:samples], warmup=2)
    sync()
    replies, per_s = gen.generate_all(prompts[:batch], batch_size=batch, progress=False)
    assert all(len(r.token_ids) == new_tokens for r in replies)
    return {**latency, "batch": batch, "replies_per_s": round(per_s, 2),
            "tokens_per_second_batched": round(per_s * new_tokens, 1),
            "prompt_tokens": prompt_len, "new_tokens": new_tokens}


def run(label: str, fn, results: dict) -> None:
    try:
        results[label] = fn()
    except torch.cuda.OutOfMemoryError:
        results[label] = {"oom": True}
    free()
    print(label, json.dumps(results[label]), flush=True)


def main() -> None:
    from supportagent.config import PromptTuningParams, QLoraParams
    from supportagent.model.methods import set_checkpointing
    from supportagent.model.methods.prompt_tuning import add_soft_prompt
    from supportagent.model.methods.qlora import add_lora

    ap = argparse.ArgumentParser()
    ap.add_argument("--label", default="", help="added to the record's file name")
    ap.add_argument("--seq", type=int, default=512)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--tiny", action="store_true", help="a tiny model of the same shape family (smoke test, CPU)")
    ap.add_argument("--peak-tflops", type=float, default=790.0)
    ap.add_argument("--qlora", nargs="*", default=["8:1:0.05", "8:1:0", "16:1:0", "8:2:0", "4:2:0", "4:0:0", "2:0:0"],
                    help="batch:checkpoint_every_n_layers:lora_dropout per QLoRA configuration")
    ap.add_argument("--pt", nargs="*", default=["8:1", "8:0"], help="batch:checkpoint_every_n_layers")
    ap.add_argument("--no-serve", action="store_true", help="training only (always so under torchrun)")
    args = ap.parse_args()
    gpus = init_distributed()
    serve = gpus == 1 and not args.no_serve
    main_process = int(os.environ.get("RANK", "0")) == 0
    torch.backends.cuda.matmul.allow_tf32 = True
    results: dict = {}
    arch = {**MISTRAL_7B, **(TINY if args.tiny else {})}
    record = {"notes": f"Mistral-7B-architecture model, random weights, {gpus} GPU(s): training speed and memory "
                      f"at sequence length {args.seq}" + (", serving latency" if serve else ""), "gpus": gpus,
              "machine": records.gpu_facts(), "versions": records.versions(), "config": arch,
              "peak_tflops_bf16": args.peak_tflops, "flops_note": __doc__.split("MFU counts")[1].strip(),
              "results": results}
    t0 = time.perf_counter()
    model = build_bf16(arch)
    print(f"built bf16 model in {time.perf_counter() - t0:.0f} s", flush=True)

    # prompt tuning: frozen bf16 base, 20 virtual tokens
    pt_params = PromptTuningParams(lr=0.03, num_virtual_tokens=20, prompt_init="random")
    pt = add_soft_prompt(model, pt_params)
    for spec in args.pt:
        batch, every_n = (int(x) for x in spec.split(":"))
        set_checkpointing(pt.get_base_model(), every_n)
        run(
            f"prompt_tuning_b{batch}_ckpt{every_n}",
            lambda: {
                "method": "prompt_tuning",
                "batch": batch,
                "seq": args.seq,
                "checkpoint_every_n_layers": every_n,
                "num_virtual_tokens": 20,
                "base": "bf16",
                **train_speed(pt, batch, args.seq, args.steps, args.warmup, 20, "adamw", every_n,  # noqa: F821
                              args.peak_tflops),
            },
            results,
        )
    set_checkpointing(pt.get_base_model(), 0)
    pt.eval()
    soft = pt.get_prompt(batch_size=1).detach().to(torch.bfloat16)
    if serve:
        run("serve_prompt_tuning_bf16", lambda: serve_speed(model, 128, 64, 32, 5, soft), results)
    model = pt.get_base_model()
    del pt

    # QLoRA: the same weights quantised in place to NF4 (double quantisation), LoRA r16 on all linears
    quantize_nf4_(model)
    if DEVICE == "cuda":
        print(f"quantised; weights {torch.cuda.memory_allocated() / 2**30:.2f} GiB", flush=True)
    for spec in args.qlora:
        b, n, d = spec.split(":")
        batch, every_n, dropout = int(b), int(n), float(d)
        params = QLoraParams(lr=2e-4, lora_r=16, lora_alpha=32, lora_dropout=dropout, checkpoint_every_n_layers=every_n)
        lora = add_lora(model, params)
        run(f"qlora_b{batch}_ckpt{every_n}_drop{dropout:g}", lambda: {
            "method": "qlora", "batch": batch, "seq": args.seq, "checkpoint_every_n_layers": every_n,
            "lora_r": 16, "lora_dropout": dropout, "optimizer": "paged_adamw_8bit",
            "trainable_params": sum(p.numel() for p in lora.parameters() if p.requires_grad),
            **train_speed(lora, batch, args.seq, args.steps, args.warmup, 0, "paged_adamw_8bit", every_n,
                          args.peak_tflops)}, results)
        if spec != args.qlora[-1]:
            model = lora.unload()
            del lora
    if serve:
        set_checkpointing(lora.get_base_model(), 0)
        lora.eval()
        run("serve_qlora_nf4", lambda: serve_speed(lora, 128, 64, 32, 5), results)
        base = lora.get_base_model()
        with lora.disable_adapter():
            run("serve_prompt_tuning_nf4", lambda: serve_speed(base, 128, 64, 32, 5, soft), results)

    ok = [
        v
        for k, v in results.items()
        if k.startswith("qlora") and not v.get("oom") and (v["peak_memory_gib"] or 0) <= 10
    ]
    if ok:
        best = max(ok, key=lambda v: v["tokens_per_second"])
        record["qlora_7b"] = {**best, "chosen_as": "fastest QLoRA configuration within 10 GiB peak"}
    if main_process:
        records.save("gpu_7b", record, label=args.label + ("-tiny" if args.tiny else ""))
        print(json.dumps(record.get("qlora_7b"), indent=2))
    if gpus > 1:
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
