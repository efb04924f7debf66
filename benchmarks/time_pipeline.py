"""Time every stage of `dvc repro` on this machine and record it with the machine's facts.

    python benchmarks/time_pipeline.py            # runs each stage in order (`dvc repro -s`), timing it
    python benchmarks/time_pipeline.py --force    # retrain and re-evaluate everything
    python benchmarks/time_pipeline.py --times F  # only record times already measured ("stage seconds rc=0" lines)

Writes a record to benchmarks/results/time_pipeline/: seconds per stage, the training metrics, and CPU facts."""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from gpu_pipeline import stage_graph  # benchmarks/, the script's own folder

from supportagent.reporting import records

ROOT = Path(__file__).resolve().parents[1]

ORDER = list(stage_graph())  # dvc.yaml's stages in its order, every method's included


def run(force: bool) -> dict:
    dvc = str(Path(sys.executable).parent / "dvc")
    times = {}
    for stage in ORDER:
        start = time.perf_counter()
        subprocess.run([dvc, "repro", "-s", *(["-f"] if force else []), stage], cwd=ROOT, check=True,
                       env={**os.environ, "PATH": os.pathsep.join([str(Path(dvc).parent), os.environ["PATH"]])})
        times[stage] = round(time.perf_counter() - start, 1)
    return times


def main() -> None:
    from supportagent.runtime import compute_dtype

    ap = argparse.ArgumentParser()
    ap.add_argument("--force", action="store_true")
    ap.add_argument("--times", help="record these measured times instead of running")
    ap.add_argument("--note", help="free text stored with the record (how the run was made)")
    args = ap.parse_args()
    if args.times:
        rows = [line.split() for line in Path(args.times).read_text().splitlines() if line.strip()]
        times = {r[0]: float(r[1]) for r in rows if r[0] in ORDER}
    else:
        times = run(args.force)
    train = {m: json.loads((ROOT / f"metrics/train/{m}.json").read_text()) for m in ("qlora", "prompt_tuning")}
    group = lambda prefix: round(sum(v for k, v in times.items() if k.startswith(prefix)), 1)
    record = {
        "notes": "wall seconds per stage of `dvc repro` (default params), on this machine"
        + (f"; {args.note}" if args.note else ""),
        "stage_seconds": times,
        "train_seconds_total": group("train@"),
        "evaluate_seconds_total": group("evaluate@") + group("baseline@"),
        "pipeline_seconds": round(sum(times.values()), 1),
        "training_tokens_per_second": {m: t["tokens_per_second"] for m, t in train.items()},
        "training_peak_rss_mb": {m: t["peak_memory_mb"] for m, t in train.items()},
        "rouge_l": {
            f.stem: json.loads(f.read_text())["rouge_l"] for f in sorted((ROOT / "metrics/eval").glob("*.json"))
        },
        "machine": {
            **records.cpu_facts(),
            "compute_dtype": str(compute_dtype()).removeprefix("torch."),
            "training_dtype": str(compute_dtype(training=True)).removeprefix("torch."),
        },
    }
    record["targets"] = [records.target("both trainings, wall s", record["train_seconds_total"], "<= 900"),
                         records.target("all evaluations, wall s", record["evaluate_seconds_total"], "<= 300"),
                         records.target("whole `dvc repro`, wall s", record["pipeline_seconds"], "<= 1200")]
    records.save("time_pipeline", record)
    print(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
