"""The served method trained and tested again with other seeds on this CPU, each run's lead over retrieval with
its 95% interval: is the committed run's lead one the method keeps, or one draw?

    python benchmarks/cpu_seeds.py --seeds 43 44 45 46     # after `dvc repro` (its outputs are the seed-42 run)

`seed` draws the training order, the validation-loss sample and the candidates' draws; the data, the split, the
index and the retrieval baseline stay the committed run's. Each seed trains the served method as the `train`
stage does (into build/seeds/<seed>, resuming from its checkpoints after an interruption) and evaluates it on the
test split as `evaluate` does. A seed already in the record for this commit and machine is skipped, so a stopped
run goes on where it was. Writes a record to benchmarks/results/cpu_seeds/ (the pipeline's own run, seed 42, first)."""
from __future__ import annotations

import argparse
import json
import time
import sys
from pathlib import Path

from supportagent.reporting import records

ROOT = Path(__file__).resolve().parents[1]
KEYS = ["rouge_l", "semantic_similarity", "bleu", "distinct_replies", "placeholder_rate"]


def run_seed(seed: int, paths: dict, p, splits: dict, retrieval) -> dict:
    """Train the served method with `seed` and score it on the test split: its metrics and its lead over
    `retrieval` (the committed run's scored replies)."""
    from supportagent.evaluation.comparison import lead_over_retrieval
    from supportagent.evaluation.evaluate import evaluate_system
    from supportagent.model.training import train

    p = p.model_copy(update={"seed": seed})
    work = ROOT / "build/seeds" / str(seed)
    start = time.perf_counter()
    trained = train(p.method, splits["train"], splits["val"], paths["base"], paths["index"], work / "adapter",
                    getattr(p.train, p.method), p.model, p.rules, p.retrieval, seed, work / "logs",
                    checkpoint_root=work / "checkpoints")
    train_s = time.perf_counter() - start
    metrics, rows = evaluate_system(p.method, p, splits["test"], splits["train"], str(paths["base"]),
                                    str(paths["index"]), str(work / "adapter"))
    lead = lead_over_retrieval({"retrieval": retrieval, p.method: rows}, systems=[p.method])[p.method]
    return {"seed": seed, **{k: metrics[k] for k in KEYS}, "final_val_loss": trained["final_val_loss"],
            "train_seconds": round(train_s, 1), "lead_over_retrieval": lead}


def main() -> None:
    import pandas as pd

    from supportagent.config import load_params
    from supportagent.paths import DVC_YAML, pipeline_paths
    from supportagent.evaluation.predictions import read_predictions
    from supportagent.runtime import compute_dtype

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", required=True)
    args = ap.parse_args()
    p = load_params(ROOT / "params.yaml")
    paths = {k: ROOT / v for k, v in pipeline_paths(ROOT / DVC_YAML).items()}
    comparison = json.loads((paths["metrics"] / "comparison.json").read_text())
    if "lead_over_retrieval" not in comparison:
        sys.exit(f"{paths['metrics'] / 'comparison.json'} has no lead_over_retrieval: run `dvc repro compare`")
    served = json.loads((paths["metrics"] / f"eval/{p.method}.json").read_text())
    pipeline = {
        "seed": p.seed,
        **{k: served[k] for k in KEYS},
        "final_val_loss": json.loads((paths["metrics"] / f"train/{p.method}.json").read_text())["final_val_loss"],
        "lead_over_retrieval": comparison["lead_over_retrieval"][p.method],
    }
    record = {
        "notes": f"{p.method} (the served method, default params) trained and tested with other seeds on this "
        "CPU; the first run is the pipeline's (metrics/); lead: the mean per-message difference from "
        "retrieval on the test split with its 95% interval (paired t)",
        "command": "python benchmarks/cpu_seeds.py --seeds " + " ".join(map(str, args.seeds)),
        "method": p.method,
        "retrieval": {k: comparison["retrieval"][k] for k in ("rouge_l", "semantic_similarity")},
        "machine": {**records.cpu_facts(), "training_dtype": str(compute_dtype(training=True)).removeprefix("torch.")},
    }
    old = records.existing("cpu_seeds", machine=record["machine"])
    runs = {int(r["seed"]): r for r in records.unflatten(old.metrics)["runs"].values()} if old else {}
    runs[p.seed] = pipeline
    splits = {s: pd.read_parquet(paths["splits"] / f"{s}.parquet") for s in ("train", "val", "test")}
    retrieval = read_predictions(paths["predictions"] / "retrieval.jsonl", base_dir=str(paths["base"]))
    for seed in args.seeds:
        if seed in runs:
            print(f"seed {seed}: recorded already, skipped")
            continue
        print(f"seed {seed}: training and evaluating {p.method}", flush=True)
        runs[seed] = run_seed(seed, paths, p, splits, retrieval)
        print(json.dumps(runs[seed]), flush=True)
        records.save("cpu_seeds", {**record, "runs": list(runs.values())})  # after each seed: a stopped run keeps it
    records.save("cpu_seeds", {**record, "runs": list(runs.values())})


if __name__ == "__main__":
    main()
