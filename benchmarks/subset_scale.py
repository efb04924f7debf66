"""The `subset` stage on TWCS-shaped files of the full Kaggle size (2.8M rows) and ten times it (28M rows).

    python benchmarks/subset_scale.py [--scales 1 10] [--reference-checkout DIR]

Each file is made once under benchmarks/tmp/ (git-ignored) from the bundled sample's real threads: the sample
repeated with re-numbered tweet ids and links, written as RFC 4180 csv (CRLF rows, so texts holding a bare CR
are quoted). The stage then runs in a fresh process per file; the record keeps rows, file size, wall time, peak
RSS, the pairs and a hash of them. `--reference-checkout` runs the same on another checkout's code (e.g. a
`git worktree` of an older commit) for a side-by-side. Targets (2-core machine): peak RSS <= 4 GiB at ten
times the data, and the full size no slower than the reference. Result: a record in benchmarks/results/subset_scale/."""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from supportagent.reporting import records

ROOT = Path(__file__).resolve().parents[1]
TMP = ROOT / "benchmarks/tmp"
FULL_ROWS = 2_811_774  # rows of the real Kaggle twcs.csv
PEAK_RSS_MB = 4096

STAGE = """
import hashlib, json, resource, sys, time
from supportagent.config import load_params
from supportagent.data.pairs import make_subset
start = time.perf_counter()
p = load_params("params.yaml")
pairs, m = make_subset(sys.argv[1], p.subset, p.data_seed)
print(json.dumps({"seconds": round(time.perf_counter() - start, 1), "rows_read": m["rows_read"], "pairs": len(pairs),
                  "pairs_sha256": hashlib.sha256(pairs.to_csv(index=False).encode()).hexdigest()[:16],
                  "dropped": m["dropped"],
                  "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}))
"""


def make_file(scale: int) -> Path:
    """The sample's threads repeated to `scale` times the full data set's rows, ids shifted per copy."""
    sample = pd.read_csv(ROOT / "data/raw/twcs.csv", dtype=str, keep_default_na=False)
    copies = int(np.ceil(scale * FULL_ROWS / len(sample)))
    path = TMP / f"twcs_x{scale}.csv"
    if path.exists():
        return path
    ids = pd.to_numeric(sample["tweet_id"])
    parents = pd.to_numeric(sample["in_response_to_tweet_id"], errors="coerce")
    responses = sample["response_tweet_id"].str.split(",")
    span = int(ids.max()) + 1
    TMP.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    with partial.open("w", newline="") as f:
        for k in range(copies):
            part = sample.copy()
            off = k * span
            part["tweet_id"] = (ids + off).astype(str)
            part["in_response_to_tweet_id"] = (parents + off).astype("Int64").astype(str).replace("<NA>", "")
            part["response_tweet_id"] = responses.map(lambda xs: ",".join(str(int(x) + off) for x in xs if x.isdigit()))
            part.to_csv(f, header=k == 0, index=False, lineterminator="\r\n")
            if k % 50 == 0:
                print(f"writing {path.name}: copy {k + 1} of {copies}", file=sys.stderr, flush=True)
    partial.rename(path)
    return path


def run_stage(path: Path, checkout: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(checkout / "src")}
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", STAGE, str(path)], cwd=ROOT, env=env, capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(f"the stage failed on {path}:\n{out.stderr[-3000:]}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    return {**result, "process_seconds": round(time.perf_counter() - start, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scales", type=int, nargs="+", default=[1, 10], help="multiples of the full data set's rows")
    ap.add_argument("--reference-checkout", type=Path, help="another checkout whose subset stage runs beside this one")
    args = ap.parse_args()
    runs = []
    for scale in args.scales:
        path = make_file(scale)
        for name, checkout in [("this", ROOT), ("reference", args.reference_checkout)]:
            if checkout is None or (name == "reference" and scale > 1):
                continue  # the reference reads the whole file into memory: ten times the data does not fit
            result = {"scale": scale, "code": name, "file_mb": round(path.stat().st_size / 2**20),
                      **run_stage(path, checkout)}
            print(json.dumps(result), flush=True)
            runs.append(result)
    this = {r["scale"]: r for r in runs if r["code"] == "this"}
    ref = {r["scale"]: r for r in runs if r["code"] == "reference"}
    targets = []
    if 10 in this:
        targets.append(
            records.target("peak RSS at ten times the data, MB", this[10]["peak_rss_mb"], f"<= {PEAK_RSS_MB}")
        )
    if 1 in this and 1 in ref:
        targets.append(records.target("seconds at the full size, against the reference", this[1]["seconds"],
                                      f"<= {ref[1]['seconds']}"))
        targets.append(records.target("same pairs as the reference at the full size", this[1]["pairs_sha256"],
                                      ref[1]["pairs_sha256"]))
    reference_commit = None
    if args.reference_checkout:
        reference_commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=args.reference_checkout,
                                          capture_output=True, text=True).stdout.strip() or None
    record = {"notes": "subset stage at the full data size and ten times it", "reference_commit": reference_commit,
              "machine": records.cpu_facts(), "runs": runs, "targets": targets}
    records.save("subset_scale", record)
    print(json.dumps(targets, indent=2))


if __name__ == "__main__":
    main()
