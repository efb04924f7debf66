"""Run the pipeline's stages outside DVC (e.g. on a GPU machine without DVC) and record wall time per stage.

The stage scripts run in dvc.yaml's order in a working folder (default: the project itself). With
`--overrides configs/full.yaml` the folder gets params.yaml merged with those keys, so a second
configuration runs beside the default one without touching its outputs. Every metrics file and
the timings are gathered into one JSON with GPU, driver and package versions; `--collect DIR`
copies the metrics files into DIR (e.g. metrics/full).

    python benchmarks/gpu_pipeline.py --out gpu.json                     # model stages, default params
    python benchmarks/gpu_pipeline.py --out full.json --label full --overrides configs/full.yaml \
        --workdir build/full --stages all --collect metrics/full
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = {"subset": ["subset.py"], "split": ["split.py"], "rules": ["rules_report.py"], "base": ["base.py"],
           "train@qlora": ["train.py", "qlora"], "train@prompt_tuning": ["train.py", "prompt_tuning"],
           "evaluate@zero_shot": ["evaluate.py", "zero_shot"], "evaluate@retrieval": ["evaluate.py", "retrieval"],
           "evaluate@qlora": ["evaluate.py", "qlora"], "evaluate@prompt_tuning": ["evaluate.py", "prompt_tuning"],
           "compare": ["compare.py"]}
MODEL_STAGES = [s for s in SCRIPTS if s.split("@")[0] in ("base", "train", "evaluate")]


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
    ap.add_argument("--stages", nargs="*", default=MODEL_STAGES, choices=[*SCRIPTS, "all"],
                    help="stage names in dvc.yaml's order; default: the model stages; all: every stage")
    ap.add_argument("--overrides", help="a file of params that differ from params.yaml, e.g. configs/full.yaml")
    ap.add_argument("--workdir", default=str(ROOT), help="where the stages read and write (default: the project)")
    ap.add_argument("--collect", help="copy the metrics files here afterwards, e.g. metrics/full")
    args = ap.parse_args()
    work = Path(args.workdir).resolve()
    if work != ROOT:
        from supportagent.config import read_raw

        work.mkdir(parents=True, exist_ok=True)
        (work / "params.yaml").write_text(yaml.safe_dump(read_raw(ROOT / "params.yaml", args.overrides), sort_keys=False))
        raw_csv = work / "data/raw/twcs.csv"
        if not raw_csv.exists() and (ROOT / "data/raw/twcs.csv").exists():
            raw_csv.parent.mkdir(parents=True, exist_ok=True)
            raw_csv.symlink_to(ROOT / "data/raw/twcs.csv")
    elif args.overrides:
        sys.exit("--overrides needs a --workdir other than the project (the default outputs stay as DVC made them)")
    timings = {}
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "SUPPORTAGENT_PARAMS": str(work / "params.yaml"),
           "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    for name in list(SCRIPTS) if args.stages == ["all"] else args.stages:
        script, *argv = SCRIPTS[name]
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, str(ROOT / "stages" / script), *argv], cwd=work, text=True,
                              capture_output=True, env=env)
        timings[name] = round(time.perf_counter() - start, 1)
        print(f"{name}: {timings[name]} s (rc {proc.returncode})", flush=True)
        if proc.returncode:
            print(proc.stdout[-3000:], proc.stderr[-5000:])
            break
    metrics = {}
    for sub in ("train", "eval"):
        for f in sorted((work / "metrics" / sub).glob("*.json")):
            metrics[f"{sub}/{f.stem}"] = json.loads(f.read_text())
    if args.collect:
        dest = Path(args.collect)
        for f in (work / "metrics").rglob("*.json"):
            target = dest / f.relative_to(work / "metrics")
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(f, target)
    record = {"label": args.label, "overrides": args.overrides, "machine": gpu_facts(), "versions": versions(),
              "stage_seconds": timings,
              "model_stages_seconds": round(sum(timings.values()), 1), "metrics": metrics,
              "date": time.strftime("%Y-%m-%d")}
    Path(args.out).write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps({k: record[k] for k in ("machine", "versions", "stage_seconds", "model_stages_seconds")}, indent=2))


if __name__ == "__main__":
    main()
