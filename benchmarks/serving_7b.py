"""Serving at the seed's model size on one GPU: each method on each serving path of `generation.Generator`.

Protocol: a 128-token prompt, exactly 64 new tokens (greedy; the end token held back), random weights of the
Mistral-7B-Instruct-v0.3 stand-in (`python -m supportagent make-standin`). Paths:
    qlora_4bit_eager         LoRA on the NF4 base through bitsandbytes' kernels (evaluate.fold_qlora: false)
    qlora_folded_eager       the adapter folded into the dequantised NF4 weights in bf16 (serving.fold_4bit)
    qlora_folded_compiled    the same, static KV cache + torch.compile with CUDA graphs (evaluate.engine)
    prompt_tuning_eager      20 soft-prompt vectors as inputs_embeds in front of the bf16 base
    prompt_tuning_compiled   the same, static KV cache + CUDA graphs
Per path: p50/p95 ms per reply at batch 1, ms per token, replies/s at batch 32, peak GPU GiB (above what the process
still held before the method's model loaded), and the warm-up
seconds (compilation for the compiled engine), paid once per process and shape, not per request.

    python benchmarks/serving_7b.py --standin build/standin-7b     # a record in benchmarks/results/serving_7b/
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from supportagent.reporting import records

ROOT = Path(__file__).resolve().parents[1]
PROMPT, NEW, BATCH, SAMPLES = 128, 64, 32, 10
PAIRS = (("qlora_folded_compiled", "qlora_folded_eager"), ("prompt_tuning_compiled", "prompt_tuning_eager"),
         ("qlora_folded_eager", "qlora_4bit_eager"))


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def measure(gen, prompts: list[list[int]], held: int = 0) -> tuple[dict, list[list[int]]]:
    """Warm-up (both shapes), then batch-1 latency over SAMPLES prompts and one batch of BATCH (its token ids
    are returned, to compare the paths' replies)."""
    sync()
    warm = gen.warm_up(prompts[:1], batch_size=1) + gen.warm_up(prompts[:1], batch_size=BATCH)
    times = []
    for p in prompts[:SAMPLES]:
        start = time.perf_counter()
        reply = gen.generate([p], min_new_tokens=NEW)[0]
        sync()
        times.append((time.perf_counter() - start) * 1000)
        assert len(reply.token_ids) == NEW
    start = time.perf_counter()
    replies = gen.generate(prompts[:BATCH], min_new_tokens=NEW)
    sync()
    seconds = time.perf_counter() - start
    assert all(len(r.token_ids) == NEW for r in replies)
    p50 = float(np.percentile(times, 50))
    return {
        "engine": gen.engine,
        "p50_ms": round(p50, 1),
        "p95_ms": round(float(np.percentile(times, 95)), 1),
        "ms_per_token": round(p50 / NEW, 2),
        "replies_per_s": round(BATCH / seconds, 2),
        "peak_gib": round((torch.cuda.max_memory_allocated() - held) / 2**30, 2) if torch.cuda.is_available() else None,
        "warm_up_seconds": round(warm, 1),
    }, [r.token_ids for r in replies]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--standin", required=True, help="a full-size stand-in folder (make-standin)")
    ap.add_argument("--commit")
    args = ap.parse_args()

    from peft import LoraConfig, TaskType, get_peft_model

    from supportagent.model import bases, models
    from supportagent.model.methods.prompt_tuning import add_soft_prompt
    from supportagent.config import PromptTuningParams, load_params
    from supportagent.inference.generation import Generator
    from supportagent.inference.serving import fold_4bit

    base_dir = Path(tempfile.mkdtemp()) / "base"
    bases.prepare_base(str(Path(args.standin).resolve()), None, base_dir)
    tok = models.load_tokenizer(base_dir)
    g = torch.Generator().manual_seed(0)
    prompts = [torch.randint(1000, 32000, (PROMPT,), generator=g).tolist() for _ in range(BATCH)]
    results, ids = {}, {}

    held = 0  # GPU memory the process still holds from an earlier method's runs (compiled graphs keep a model alive)

    def run(name: str, model, engine: str) -> None:
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        gen = Generator(model, tok, max_new_tokens=NEW, repetition_penalty=1.0, engine=engine)
        results[name], ids[name] = measure(gen, prompts, held)
        print(name, json.dumps(results[name]), flush=True)

    qp = load_params(ROOT / "params.yaml").train.qlora
    model = models.load_base(base_dir, quantize_4bit=True)
    lora = get_peft_model(model, LoraConfig(task_type=TaskType.CAUSAL_LM, r=qp.lora_r, lora_alpha=qp.lora_alpha,
                                            target_modules=list(qp.target_modules), lora_dropout=0.0))
    torch.manual_seed(0)
    for name, p in lora.named_parameters():  # a trained adapter is not zero: give B random values, as A has
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.02)
    lora.eval()
    run("qlora_4bit_eager", lora, "eager")
    sync()
    start = time.perf_counter()
    fold_4bit(lora)
    sync()  # the dequantisation runs asynchronously on the GPU
    fold_seconds = round(time.perf_counter() - start, 1)
    run("qlora_folded_eager", lora, "eager")
    run("qlora_folded_compiled", lora, "compiled")
    del model, lora
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    torch._dynamo.reset()
    held = torch.cuda.memory_allocated() if torch.cuda.is_available() else 0

    pt = add_soft_prompt(
        models.load_base(base_dir), PromptTuningParams(lr=0.01, prompt_init="random", num_virtual_tokens=20)
    )
    run("prompt_tuning_eager", pt, "eager")
    run("prompt_tuning_compiled", pt, "compiled")

    record = {
        "notes": "greedy decoding of exactly 64 new tokens after a 128-token prompt, Mistral-7B-Instruct-v0.3 "
                "architecture (stand-in, random weights), one process per run, through generation.Generator",
        "prompt_tokens": PROMPT, "new_tokens": NEW, "batch": BATCH, "latency_samples": SAMPLES,
        "qlora_fold_seconds": fold_seconds, "paths": results,
        "peak_gib_counts": "GPU memory above what the process held before the method's model loaded",
        # greedy replies to the same 32 prompts (64 tokens each) that are identical between two paths
        "same_replies_of_32": {f"{a} = {b}": sum(x == y for x, y in zip(ids[a], ids[b])) for a, b in PAIRS},
        # where they part: random weights give near-flat logits, so one bf16 rounding difference flips a token
        "mean_tokens_before_first_difference": {f"{a} = {b}": round(float(np.mean(
            [next((i for i, (u, v) in enumerate(zip(x, y)) if u != v), NEW) for x, y in zip(ids[a], ids[b])])), 1)
            for a, b in PAIRS},
        "targets": [t for name, r in results.items() for t in (
            records.target(f"{name}: p50 ms at batch 1", r["p50_ms"], "<= 450"),
            records.target(f"{name}: replies/s at batch {BATCH}", r["replies_per_s"], ">= 45"))],
        "machine": records.gpu_facts(), "versions": records.versions(),
        **({"commit": args.commit} if args.commit else {}),
    }
    records.save("serving_7b", record)
    print(json.dumps(record["paths"], indent=2))


if __name__ == "__main__":
    main()
