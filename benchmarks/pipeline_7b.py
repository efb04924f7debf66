"""The whole pipeline at the seed's model size on one GPU: every stage of dvc.yaml with `model.base` pointing at a
full-size Mistral-7B-Instruct-v0.3 stand-in (real tokenizer and chat format, random weights) and the 7B training
settings of configs/mistral_7b.yaml. Nothing else changes: the stages are the ones DVC runs.

    python benchmarks/pipeline_7b.py [--standin /tmp/standin] [--tokenizer-from DIR]

Records wall seconds per stage, the QLoRA peak GPU memory, training tokens/s on TWCS prompts, serving latency
and the GPU and package versions in a record (benchmarks/results/pipeline_7b/). The replies are nonsense
(random weights): quality figures
of this run mean nothing and are not recorded.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import yaml

from supportagent.reporting import records

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--standin", default="build/standin-7b", help="where the stand-in is written (~14.5 GB)")
    ap.add_argument("--tokenizer-from", help="a folder with the converted tokenizer (no mistral-common here)")
    ap.add_argument("--workdir", default="build/pipeline-7b")
    ap.add_argument("--commit", help="the commit of the code run (default: git rev-parse of this checkout)")
    ap.add_argument("--jobs", type=int, default=1,
                    help="stages run at once once their inputs exist (gpu_pipeline.py --jobs; 1: as `dvc repro`)")
    args = ap.parse_args()

    standin = Path(args.standin).resolve()
    start = time.perf_counter()
    if not (standin / "standin.json").exists():
        subprocess.run([sys.executable, "-m", "supportagent", "make-standin", "--out", str(standin),
                        *(["--tokenizer-from", args.tokenizer_from] if args.tokenizer_from else [])], check=True)
    standin_seconds = round(time.perf_counter() - start, 1)
    overrides = yaml.safe_load((ROOT / "configs/mistral_7b.yaml").read_text())
    overrides["model"]["base"] = str(standin)
    work = Path(args.workdir).resolve()
    work.mkdir(parents=True, exist_ok=True)
    (work / "overrides.yaml").write_text(yaml.safe_dump(overrides, sort_keys=False))
    run = work / "gpu_pipeline.json"
    subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks/gpu_pipeline.py"),
            "--stages",
            "all",
            "--label",
            "pipeline_7b",
            "--overrides",
            str(work / "overrides.yaml"),
            "--workdir",
            str(work),
            "--out",
            str(run),
            "--no-record",
            "--jobs",
            str(args.jobs),
        ],
        check=True,
    )
    r = json.loads(run.read_text())
    m = r["metrics"]
    from gpu_pipeline import STAGES

    ran_all = set(r["stage_seconds"]) == set(STAGES)  # gpu_pipeline stops at the first stage that fails
    pick = lambda key, fields: {x: m[key].get(x) for x in fields} if key in m else None  # noqa: E731
    peak = lambda key: round(m[key]["peak_memory_mb"] / 1024, 2) if key in m else None  # noqa: E731
    record = {
        "notes": ("every dvc.yaml stage, one after another as `dvc repro` runs them" if args.jobs == 1 else
                  f"every dvc.yaml stage, up to {args.jobs} at once once their inputs exist (--jobs {args.jobs})")
        + ", with model.base = a full-size "
        "Mistral-7B-Instruct-v0.3 stand-in (v3 tokenizer and chat format from mistral-common, random bf16 "
        "weights) and configs/mistral_7b.yaml; default params otherwise",
        "standin": json.loads((standin / "standin.json").read_text()),
        "standin_seconds": standin_seconds,
        "overrides": overrides,
        "stage_seconds": r["stage_seconds"],
        "total_seconds": r["model_stages_seconds"],
        "wall_seconds": r["wall_seconds"],
        "jobs": args.jobs,
        "every_stage_ran": ran_all,
        "qlora_peak_gib": peak("train/qlora"),
        "prompt_tuning_peak_gib": peak("train/prompt_tuning"),
        "training": {
            k: pick(
                f"train/{k}",
                (
                    "train_pairs",
                    "steps",
                    "train_seconds",
                    "tokens_per_second",
                    "peak_memory_mb",
                    "adapter_mb",
                    "final_val_loss",
                ),
            )
            for k in ("qlora", "prompt_tuning")
        },
        # random weights: how long the replies are (the length limit, or an end token an adapter learned early)
        # decides the latency as much as the path does; the pool may send past replies over most of the nonsense
        "serving": {
            k: pick(
                f"eval/{k}", ("latency_p50_ms", "latency_p95_ms", "replies_per_s", "avg_words", "truncated_share", "n",
                             "send_ready", "past_reply_share", "fallback_retrieval_share", "fallback_template_share")
            )
            for k in ("zero_shot", "retrieval", "qlora", "prompt_tuning")
        },
        "machine": r["machine"],
        "versions": r["versions"],
        **({"commit": args.commit} if args.commit else {}),
    }
    records.save("pipeline_7b", record)
    print(json.dumps(record, indent=2))
    if not ran_all:
        sys.exit("a stage failed: see the logs in the work folder")


if __name__ == "__main__":
    main()
