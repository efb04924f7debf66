"""fp32 or bf16 on this CPU? Measures what `runtime.compute_dtype()` decides by.

For both dtypes: matmul GFLOP/s at SmolLM2-135M's layer shapes (256 tokens x 576 -> 1536), and a
training step (forward + backward, frozen base, a 2 x 128-token batch) and a 32-token greedy decode
of the embedded base from `models/base` (run `dvc repro base` first). Writes a record with the CPU's facts to
benchmarks/results/cpu_dtype/ (one file per machine and commit: each CPU kind keeps its own).

    python benchmarks/cpu_dtype.py
"""
from __future__ import annotations

import time
from pathlib import Path

import torch

from supportagent.reporting import records

ROOT = Path(__file__).resolve().parents[1]


def best_of(fn, repeat: int = 5) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def matmul_gflops(dtype: torch.dtype, tokens: int = 256, k: int = 576, n: int = 1536) -> float:
    a, b = torch.randn(tokens, k, dtype=dtype), torch.randn(k, n, dtype=dtype)
    return 2 * tokens * k * n / best_of(lambda: [a @ b for _ in range(20)]) * 20 / 1e9


def model_seconds(dtype: torch.dtype) -> dict:
    from transformers import AutoModelForCausalLM

    from supportagent.model.bases import read_manifest

    model = AutoModelForCausalLM.from_pretrained(read_manifest(ROOT / "models/base")[1], dtype=dtype)
    for p in model.parameters():
        p.requires_grad_(False)
    model.get_input_embeddings().weight.requires_grad_(True)  # a gradient must flow back through every layer
    ids = torch.randint(10, 1000, (2, 128))

    def step():
        model.zero_grad(set_to_none=True)
        model(input_ids=ids, labels=ids).loss.backward()

    prompt = torch.randint(10, 1000, (1, 64))
    decode = lambda: model.generate(prompt, max_new_tokens=32, min_new_tokens=32, do_sample=False)
    return {"train_step_s": round(best_of(step, 3), 3),
            "decode_32_tokens_s": round(best_of(lambda: torch.no_grad()(decode)(), 2), 3)}


def main() -> None:
    from supportagent.runtime import compute_dtype

    torch.manual_seed(0)
    record = {
        "notes": "fp32 vs bf16 on this CPU: matmul at SmolLM2-135M shapes, a training step and a greedy decode of "
        "the base",
        "machine": records.cpu_facts(),
        "chosen": str(compute_dtype()).removeprefix("torch."),
        "chosen_for_training": str(compute_dtype(training=True)).removeprefix("torch."),
        "results": {},
    }
    for dtype in (torch.float32, torch.bfloat16):
        name = str(dtype).removeprefix("torch.")
        record["results"][name] = {"matmul_gflops": round(matmul_gflops(dtype), 1), **model_seconds(dtype)}
        print(name, record["results"][name], flush=True)
    records.save("cpu_dtype", record)
    print(f"chosen: {record['chosen']}")


if __name__ == "__main__":
    main()
