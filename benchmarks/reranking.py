"""What reranking sampled candidates (`evaluate.candidates`, reranking.py) buys each LLM system on this machine.

    python benchmarks/reranking.py                    # every LLM system, greedy vs 16 candidates, val and test
    python benchmarks/reranking.py --candidates 8 --splits val --systems qlora

Runs evaluation.evaluate_system with the workspace's trained adapters, index and params (only
evaluate.candidates changed), on each split: retrieval, and for each LLM system the greedy reply alone
(0 candidates) and the reranked reply. Each evaluation runs in a fresh process, so its peak memory is its own.
The validation split is where a setting is chosen; the test split is what the README reports. Writes a record to
benchmarks/results/reranking/ (commit, date, CPU, seconds and peak RSS per evaluation)."""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KEYS = ["rouge_l", "semantic_similarity", "bleu", "distinct_replies", "distinct_2", "placeholder_rate",
        "latency_p50_ms", "replies_per_s"]


def one(split: str, system: str, candidates: int, seed: int | None = None) -> dict:
    """One evaluation in this process: its metrics, seconds and the process's peak RSS. `seed` replaces params'
    seed, which (the split being made already) seeds only the candidates' draws."""
    import pandas as pd

    from supportagent.config import load_params
    from supportagent.evaluation.evaluate import evaluate_system
    from supportagent.paths import pipeline_paths

    params = load_params(ROOT / "params.yaml")
    params = params.model_copy(update={"evaluate": params.evaluate.model_copy(update={"candidates": candidates}),
                                       **({} if seed is None else {"seed": seed})})
    paths = {k: ROOT / v for k, v in pipeline_paths(ROOT / "dvc.yaml").items()}
    train = pd.read_parquet(paths["splits"] / "train.parquet")
    frame = pd.read_parquet(paths["splits"] / f"{split}.parquet")
    start = time.perf_counter()
    metrics, _ = evaluate_system(system, params, frame, train, str(paths["base"]), str(paths["index"]),
                                 None if system == "retrieval" else str(paths["adapters"] / system))
    return {k: metrics.get(k) for k in KEYS} | {
        "n": metrics["n"], "seconds": round(time.perf_counter() - start, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}


def main() -> None:
    from supportagent.reporting import records
    from supportagent.config import load_params

    ap = argparse.ArgumentParser()
    ap.add_argument("--candidates", type=int, default=16)
    ap.add_argument("--splits", nargs="+", default=["val", "test"], choices=["val", "test"])
    ap.add_argument("--systems", nargs="+", default=["zero_shot", "qlora", "prompt_tuning"],
                    choices=["zero_shot", "qlora", "prompt_tuning"])
    ap.add_argument("--draws", type=int, default=4,
                    help="the served method's reranked test evaluation again with this many other seeds: the spread "
                         "of its draws")
    ap.add_argument("--one", nargs=4, metavar=("SPLIT", "SYSTEM", "CANDIDATES", "SEED"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:  # a child process: one evaluation, its row as the last line of stdout
        split, system, n, seed = args.one
        print(json.dumps(one(split, system, int(n), None if seed == "params" else int(seed))))
        return
    params = load_params(ROOT / "params.yaml")
    runs = [("retrieval", "retrieval", 0)] + [
        run for s in args.systems for run in ((f"{s}, greedy", s, 0), (f"{s}, {args.candidates} candidates", s,
                                                                        args.candidates))]
    record = {"notes": f"each LLM system's greedy reply alone against the consensus of the greedy and "
                      f"{args.candidates} sampled replies (evaluate.candidates), and retrieval; the workspace's "
                      "adapters and params otherwise; each evaluation in a fresh process (peak_rss_mb: its peak)",
              "served": params.method,
              "machine": records.cpu_facts(),
              "evaluate": params.evaluate.model_copy(update={"candidates": args.candidates}).model_dump(),
              "splits": {}}

    def child(split: str, system: str, n: int, seed: int | None = None) -> dict:
        out = subprocess.run([sys.executable, __file__, "--one", split, system, str(n),
                              "params" if seed is None else str(seed)],
                             cwd=ROOT, check=True, stdout=subprocess.PIPE, text=True).stdout
        return json.loads(out.strip().splitlines()[-1])

    for split in args.splits:
        record["splits"][split] = {}
        for label, system, n in runs:
            record["splits"][split][label] = row = child(split, system, n)
            print(split, label, row, flush=True)
            records.save("reranking", record)
    if args.draws and "test" in args.splits and params.method in args.systems:
        record["draws"] = {"split": "test", "system": params.method, "runs": {
            str(params.seed): record["splits"]["test"][f"{params.method}, {args.candidates} candidates"]}}
        for seed in range(params.seed + 1, params.seed + 1 + args.draws):
            record["draws"]["runs"][str(seed)] = row = child("test", params.method, args.candidates, seed)
            print("draws, seed", seed, row, flush=True)
            records.save("reranking", record)


if __name__ == "__main__":
    main()
