"""Sweeps on the GPU that chose the CPU defaults: train on the default split, evaluate on the test split.

    python benchmarks/gpu_sweep.py defaults                      # learning rate, rank, size
    python benchmarks/gpu_sweep.py budget [method or indices]

Writes a record to benchmarks/results/gpu_sweep/ (label: the sweep's name) after each configuration.

Each configuration is trained and evaluated exactly as the pipeline does (same library calls), with
params.yaml as it is now (retrieved examples included; the recorded sweeps ran before them, with
retrieval.k 0). For retrieval settings, see benchmarks/retrieval_sweep.py."""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pandas as pd

from supportagent.config import load_params
from supportagent.evaluation.evaluate import evaluate_system
from supportagent.model.training import train
from supportagent.reporting import records

ROOT = Path(__file__).resolve().parents[1]

SWEEPS = {
    # first sweep: learning rate, rank, size; 48 test replies
    "defaults": (48, [
        ("qlora", {"max_train_pairs": 240, "lr": 1e-3}, [1.1, 1.0]),
        ("qlora", {"max_train_pairs": 240, "lr": 2e-3}, [1.0]),
        ("qlora", {"max_train_pairs": 240, "lr": 1e-3, "lora_r": 8, "lora_alpha": 16}, [1.0]),
        ("prompt_tuning", {"max_train_pairs": 300, "lr": 0.03}, [1.1, 1.0]),
        ("prompt_tuning", {"max_train_pairs": 300, "lr": 0.1}, [1.0]),
        ("prompt_tuning", {"max_train_pairs": 300, "lr": 0.03, "num_virtual_tokens": 8}, [1.0]),
    ]),
    # second sweep: at the CPU default's token budget, more optimizer
    # steps (smaller batches) for prompt tuning, and LoRA without dropout; the whole test split
    "budget": (0, [
        ("prompt_tuning", {}, [1.0]),
        ("prompt_tuning", {"batch_size": 4}, [1.0]),
        ("prompt_tuning", {"batch_size": 2}, [1.0]),
        ("prompt_tuning", {"batch_size": 4, "lr": 0.01}, [1.0]),
        ("prompt_tuning", {"batch_size": 2, "lr": 0.01}, [1.0]),
        ("prompt_tuning", {"batch_size": 4, "num_virtual_tokens": 40}, [1.0]),
        ("qlora", {}, [1.0]),
        ("qlora", {"lora_dropout": 0.0}, [1.0]),
        ("prompt_tuning", {"batch_size": 2, "lr": 0.02}, [1.0]),
        ("prompt_tuning", {"batch_size": 1, "lr": 0.005}, [1.0]),
        ("prompt_tuning", {"batch_size": 2, "lr": 0.015}, [1.0]),
    ]),
}


def main(sweep: str = "budget", only: str | None = None) -> None:
    p = load_params(ROOT / "params.yaml")
    data = ROOT / "data/processed"
    tr, va, te = (pd.read_parquet(data / f"{s}.parquet") for s in ("train", "val", "test"))
    results = []
    test_size, configs = SWEEPS[sweep]
    for i, (method, update, penalties) in enumerate(configs):
        if only and method not in only.split(",") and str(i) not in only.split(","):  # a method or indices
            continue
        tp = getattr(p.train, method).model_copy(update=update)
        t = time.perf_counter()
        m = train(method, tr, va, ROOT / "models/base", ROOT / "models/index", f"/tmp/sweep/{i}", tp, p.model, p.rules,
                  p.retrieval, p.seed, f"/tmp/sweep_plots/{i}", checkpoint_root="/tmp/sweep_ckpt")
        for rp in penalties:
            pe = p.model_copy(
                update={
                    "evaluate": p.evaluate.model_copy(
                        update={"repetition_penalty": rp, "test_size": test_size, "latency_samples": 0}
                    )
                }
            )
            ev, _ = evaluate_system(method, pe, te, tr, str(ROOT / "models/base"), str(ROOT / "models/index"),
                                    f"/tmp/sweep/{i}")
            rec = {"method": method, **update, "repetition_penalty": rp, "final_val_loss": m["final_val_loss"],
                   **{k: ev[k] for k in ("rouge_l", "bleu", "semantic_similarity", "avg_words", "truncated_share")}}
            results.append(rec)
            print(json.dumps(rec), f"{time.perf_counter() - t:.0f}s", flush=True)
        records.save(
            "gpu_sweep",
            {
                "results": results,
                "machine": records.machine_facts(),
                "versions": records.versions(),
                "notes": f"sweep `{sweep}`: {__doc__.splitlines()[0]}",
            },
            label=sweep,
        )


if __name__ == "__main__":
    main(*sys.argv[1:3])
