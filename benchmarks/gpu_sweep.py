"""Small learning-rate / size sweep on the GPU, to choose the CPU defaults (results: benchmarks/sweep.json).

Each config trains on the default split with a token budget that fits the CPU pipeline, then is
evaluated on the test split, exactly as the pipeline does."""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from supportagent.config import load_params  # noqa: E402
from supportagent.evaluation import evaluate_system  # noqa: E402
from supportagent.training import train  # noqa: E402

CONFIGS = [
    ("qlora", {"max_train_pairs": 240, "lr": 1e-3}, [1.1, 1.0]),
    ("qlora", {"max_train_pairs": 240, "lr": 2e-3}, [1.0]),
    ("qlora", {"max_train_pairs": 240, "lr": 1e-3, "lora_r": 8, "lora_alpha": 16}, [1.0]),
    ("prompt_tuning", {"max_train_pairs": 300, "lr": 0.03}, [1.1, 1.0]),
    ("prompt_tuning", {"max_train_pairs": 300, "lr": 0.1}, [1.0]),
    ("prompt_tuning", {"max_train_pairs": 300, "lr": 0.03, "num_virtual_tokens": 8}, [1.0]),
]


def main(out: str, only: str | None = None) -> None:
    p = load_params(ROOT / "params.yaml")
    data = ROOT / "data/processed"
    tr, va, te = (pd.read_parquet(data / f"{s}.parquet") for s in ("train", "val", "test"))
    results = []
    for i, (method, update, penalties) in enumerate(CONFIGS):
        if only and method != only:
            continue
        tp = getattr(p.train, method).model_copy(update=update)
        t = time.perf_counter()
        m = train(method, tr, va, ROOT / "models/base", f"/tmp/sweep/{i}", tp, p.model, p.rules, p.seed,
                  f"/tmp/sweep_plots/{i}", checkpoint_root="/tmp/sweep_ckpt")
        for rp in penalties:
            pe = p.model_copy(update={"evaluate": p.evaluate.model_copy(update={"repetition_penalty": rp, "test_size": 48,
                                                                                  "latency_samples": 0})})
            ev, _ = evaluate_system(method, pe, te, tr, str(ROOT / "models/base"), f"/tmp/sweep/{i}")
            rec = {"method": method, **update, "repetition_penalty": rp, "final_val_loss": m["final_val_loss"],
                   **{k: ev[k] for k in ("rouge_l", "bleu", "semantic_similarity", "avg_words", "truncated_share")}}
            results.append(rec)
            print(json.dumps(rec), f"{time.perf_counter() - t:.0f}s", flush=True)
        Path(out).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else None)
