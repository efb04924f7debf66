"""Run the pipeline's model stages on a GPU machine and record wall time per stage.

Used on the lent H100 (no DVC there): the stage scripts run in dvc.yaml's order on already-split data
(`data/processed/*.parquet` carried along), then every metrics file and the timings are gathered
into one JSON with GPU, driver and package versions.

    python benchmarks/gpu_pipeline.py --out gpu_h100_default.json [--params params.yaml] [--label default]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STAGES = [["base.py"], ["train.py", "qlora"], ["train.py", "prompt_tuning"], ["evaluate.py", "zero_shot"],
          ["evaluate.py", "retrieval"], ["evaluate.py", "qlora"], ["evaluate.py", "prompt_tuning"]]


def versions() -> dict:
    import importlib.metadata as md

    out = {}
    for name in ["torch", "transformers", "peft", "bitsandbytes", "accelerate", "sentence-transformers"]:
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = None
    return out


def gpu_facts() -> dict:
    import torch

    facts = {"python": platform.python_version(), "cuda_available": torch.cuda.is_available()}
    if torch.cuda.is_available():
        facts.update(gpu=torch.cuda.get_device_name(0), cuda=torch.version.cuda,
                     gpu_memory_gib=round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1))
        try:
            facts["driver"] = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                             capture_output=True, text=True).stdout.strip()
        except OSError:
            pass
    return facts


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--label", default="default")
    ap.add_argument("--skip", nargs="*", default=[], help="stage names to skip, e.g. base")
    args = ap.parse_args()
    timings = {}
    for stage in STAGES:
        name = stage[0][:-3] + ("@" + stage[1] if len(stage) > 1 else "")
        if name in args.skip:
            continue
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, f"stages/{stage[0]}", *stage[1:]], cwd=ROOT, text=True,
                              capture_output=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        timings[name] = round(time.perf_counter() - start, 1)
        print(f"{name}: {timings[name]} s (rc {proc.returncode})", flush=True)
        if proc.returncode:
            print(proc.stdout[-3000:], proc.stderr[-5000:])
            break
    metrics = {}
    for sub in ("train", "eval"):
        for f in sorted((ROOT / "metrics" / sub).glob("*.json")):
            metrics[f"{sub}/{f.stem}"] = json.loads(f.read_text())
    record = {"label": args.label, "machine": gpu_facts(), "versions": versions(), "stage_seconds": timings,
              "model_stages_seconds": round(sum(timings.values()), 1), "metrics": metrics,
              "date": time.strftime("%Y-%m-%d")}
    Path(args.out).write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps({k: record[k] for k in ("machine", "versions", "stage_seconds", "model_stages_seconds")}, indent=2))


if __name__ == "__main__":
    main()
