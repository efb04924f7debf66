"""Benchmark of the `subset` stage on a file of the full Kaggle TWCS size and shape (~2.8M rows, ~500 MB).

Generates the file once (benchmarks/tmp/, git-ignored) from the bundled sample's real texts, with
re-numbered ids and thread structure, then runs the stage in a fresh process and records wall time
and peak RSS. Target on a 2-core machine: <= 60 s and <= 4 GB. Result: benchmarks/subset.json.
"""
from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
TMP = ROOT / "benchmarks/tmp"
BIG = TMP / "twcs_full_size.csv"
TARGET_ROWS = 2_811_774  # rows of the real Kaggle twcs.csv


def make_file() -> None:
    sample = pd.read_csv(ROOT / "data/raw/twcs.csv", dtype=str, keep_default_na=False)
    reps = int(np.ceil(TARGET_ROWS / len(sample)))
    ids = pd.to_numeric(sample["tweet_id"])
    span = int(ids.max()) + 1
    TMP.mkdir(parents=True, exist_ok=True)
    with BIG.open("w") as f:
        for r in range(reps):
            part = sample.copy()
            off = r * span
            part["tweet_id"] = (ids + off).astype(str)
            for col in ("in_response_to_tweet_id",):
                v = pd.to_numeric(part[col], errors="coerce")
                part[col] = (v + off).astype("Int64").astype(str).replace("<NA>", "")
            part["response_tweet_id"] = part["response_tweet_id"].str.split(",").map(
                lambda xs: ",".join(str(int(x) + off) for x in xs if x.strip().isdigit()))
            part.to_csv(f, header=(r == 0), index=False)
    print(f"wrote {BIG} ({BIG.stat().st_size / 2**20:.0f} MiB)")


def run_stage() -> dict:
    code = (
        "import sys, json, resource, time; sys.path.insert(0, 'stages');"
        "from supportagent.config import load_params; from supportagent.data import make_subset;"
        "t = time.perf_counter(); p = load_params('params.yaml');"
        f"pairs, m = make_subset('{BIG}', p.subset, p.data_seed);"
        "print(json.dumps({'seconds': time.perf_counter() - t, 'pairs': len(pairs), 'rows_read': m['rows_read'],"
        "'peak_rss_mb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))"
    )
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["process_wall_seconds"] = round(time.perf_counter() - start, 1)
    return result


def main() -> None:
    if not BIG.exists():
        make_file()
    result = run_stage()
    record = {
        "benchmark": "subset stage on a full-size TWCS-shaped file",
        "file_mb": round(BIG.stat().st_size / 2**20, 1),
        **{k: round(v, 1) if isinstance(v, float) else v for k, v in result.items()},
        "target": {"wall_seconds": 60, "peak_rss_mb": 4096},
        "machine": {"cpus": os.cpu_count(), "cpu": platform.processor() or platform.machine(),
                    "python": platform.python_version(), "pandas": pd.__version__,
                    "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)},
        "date": time.strftime("%Y-%m-%d"),
    }
    (ROOT / "benchmarks/subset.json").write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
