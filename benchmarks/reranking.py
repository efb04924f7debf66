"""What reranking sampled candidates (`evaluate.candidates`, reranking.py) buys the served method on this machine.

    python benchmarks/reranking.py                    # the served method, greedy vs 16 candidates, val and test
    python benchmarks/reranking.py --candidates 8 --splits val

Runs evaluation.evaluate_system in this process, with the workspace's trained adapter, index and params
(only evaluate.candidates changed), on each split: retrieval, the greedy reply, and the reranked reply. The
validation split is where a setting is chosen; the test split is what the README reports. Writes
benchmarks/reranking.json (commit, date, CPU, seconds per evaluation)."""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
KEYS = ["rouge_l", "semantic_similarity", "bleu", "distinct_replies", "distinct_2", "placeholder_rate",
        "latency_p50_ms", "replies_per_s"]


def main() -> None:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    sys.path.insert(0, str(ROOT / "src"))
    from time_pipeline import cpu_facts

    from supportagent.config import load_params
    from supportagent.evaluation import evaluate_system
    from supportagent.paths import pipeline_paths

    ap = argparse.ArgumentParser()
    ap.add_argument("--candidates", type=int, default=16)
    ap.add_argument("--splits", nargs="+", default=["val", "test"], choices=["val", "test"])
    ap.add_argument("--out", default=str(ROOT / "benchmarks/reranking.json"))
    args = ap.parse_args()
    params = load_params(ROOT / "params.yaml")
    paths = {k: str(ROOT / v) for k, v in pipeline_paths(ROOT / "dvc.yaml").items()}
    method, splits = params.method, Path(paths["splits"])
    train = pd.read_parquet(splits / "train.parquet")
    runs = [("retrieval", "retrieval", 0), (f"{method}, greedy", method, 0),
            (f"{method}, {args.candidates} candidates", method, args.candidates)]
    record = {"what": f"the served method ({method}) with its greedy reply against the consensus of the greedy and "
                      f"{args.candidates} sampled replies (evaluate.candidates), and retrieval; the workspace's adapter "
                      "and params otherwise",
              "command": " ".join(["python benchmarks/reranking.py", *sys.argv[1:]]),
              "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                                       text=True).stdout.strip(),
              "date": time.strftime("%Y-%m-%d"), "machine": cpu_facts(),
              "evaluate": params.evaluate.model_copy(update={"candidates": args.candidates}).model_dump(),
              "splits": {}}
    for split in args.splits:
        frame = pd.read_parquet(splits / f"{split}.parquet")
        record["splits"][split] = {}
        for label, system, n in runs:
            p = params.model_copy(update={"evaluate": params.evaluate.model_copy(update={"candidates": n})})
            start = time.perf_counter()
            metrics, _ = evaluate_system(system, p, frame, train, paths["base"], paths["index"],
                                         None if system == "retrieval" else str(Path(paths["adapters"]) / system))
            row = {k: metrics.get(k) for k in KEYS} | {"n": metrics["n"], "seconds": round(time.perf_counter() - start, 1)}
            record["splits"][split][label] = row
            print(split, label, row, flush=True)
            Path(args.out).write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
