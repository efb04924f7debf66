"""Data-parallel (DDP) training of both methods on N GPUs of one machine, against one GPU.

The `full` configuration's data and base stages run once. Each method then trains on one GPU and
under `accelerate launch` (configs/accelerate/ddp.yaml, NCCL_NVLS_ENABLE=0) on N GPUs, with the same
seed and the same global batch (per-GPU batch = batch / N), and all four adapters are evaluated on
the same test split (one GPU each). Records tokens/s, speed-up and scaling efficiency, the main
process's peak GPU memory, and the quality of both runs side by side.

    python benchmarks/gpu_ddp.py                             # every phase
    python benchmarks/gpu_ddp.py --phases prep single        # part of it (state stays in --workdir)
    python benchmarks/gpu_ddp.py --methods prompt_tuning     # one method, every phase

Writes a record to benchmarks/results/gpu_ddp/.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import yaml
from gpu_pipeline import stage_env  # benchmarks/, the script's own folder

from supportagent.reporting import records

ROOT = Path(__file__).resolve().parents[1]

METHODS = ["qlora", "prompt_tuning"]
QUALITY = ["rouge_l", "bleu", "chrf", "semantic_similarity", "exact_match", "avg_words", "n"]


def side_by_side(jobs: list[tuple[str, list[str], Path, str]]) -> dict[str, float]:
    """Run (name, argv, workdir, visible GPUs) jobs at once; wall seconds per job; stop on a failure."""
    procs = {}
    for name, argv, work, gpus in jobs:
        (work / "logs").mkdir(parents=True, exist_ok=True)
        log = open(work / "logs" / f"{name}.log", "w")
        procs[name] = (
            subprocess.Popen(
                argv,
                cwd=work,
                env={**stage_env(work), "CUDA_VISIBLE_DEVICES": gpus, "NCCL_NVLS_ENABLE": "0"},
                stdout=log,
                stderr=subprocess.STDOUT,
            ),
            time.perf_counter(),
            log,
            work,
        )
    seconds = {}
    while len(seconds) < len(procs):
        time.sleep(0.2)
        for name, (proc, start, log, work) in procs.items():
            if name in seconds or proc.poll() is None:
                continue
            seconds[name] = round(time.perf_counter() - start, 1)
            log.close()
            print(f"{name}: {seconds[name]} s (rc {proc.returncode})", flush=True)
            if proc.returncode:
                sys.exit((work / "logs" / f"{name}.log").read_text()[-4000:])
    return seconds


def prep(single: Path, ddp: Path, n: int) -> None:
    """Data and base stages of the full configuration in `single`; `ddp` shares them, with batch / n per GPU."""
    subprocess.run([sys.executable, str(ROOT / "benchmarks/gpu_pipeline.py"), "--label", "full-prep",
                    "--overrides", str(ROOT / "configs/full.yaml"), "--workdir", str(single),
                    "--stages", "subset", "split", "base", "--no-record"], check=True)
    params = yaml.safe_load((single / "params.yaml").read_text())
    params["evaluate"]["latency_samples"] = 0  # quality only: every reply batched
    (single / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    for method in METHODS:
        batch = params["train"][method]["batch_size"]
        if batch % n:
            sys.exit(f"train.{method}.batch_size {batch} does not split over {n} GPUs")
        params["train"][method]["batch_size"] = batch // n
    (ddp / "models").mkdir(parents=True, exist_ok=True)
    (ddp / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    for link, target in [(ddp / "data", single / "data"), (ddp / "models/base", single / "models/base")]:
        if not link.exists():
            link.symlink_to(target)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--gpus", type=int, default=2)
    ap.add_argument("--workdir", default=str(ROOT / "build/ddp"))
    ap.add_argument("--phases", nargs="*", default=["prep", "single", "ddp", "evaluate"],
                    choices=["prep", "single", "ddp", "evaluate"])
    ap.add_argument("--methods", nargs="*", default=METHODS, choices=METHODS)
    args = ap.parse_args()
    n, work = args.gpus, Path(args.workdir).resolve()
    single, ddp = work / "single", work / "ddp"
    times_file = work / "seconds.json"
    seconds = json.loads(times_file.read_text()) if times_file.exists() else {}
    py, train, evaluate = sys.executable, str(ROOT / "stages/train.py"), str(ROOT / "stages/evaluate.py")
    all_gpus = ",".join(str(i) for i in range(n))
    if "prep" in args.phases:
        prep(single, ddp, n)
    if "single" in args.phases:  # one GPU per method, both at once
        seconds.update(side_by_side([(f"single_train_{m}", [py, train, m], single, str(i % n))
                                     for i, m in enumerate(args.methods)]))
    if "ddp" in args.phases:  # all GPUs per method, one method after the other
        for m in args.methods:
            launch = [
                py,
                "-m",
                "accelerate.commands.launch",
                "--config_file",
                str(ROOT / "configs/accelerate/ddp.yaml"),
                "--num_processes",
                str(n),
                train,
                m,
            ]
            seconds.update(side_by_side([(f"ddp_train_{m}", launch, ddp, all_gpus)]))
    times_file.parent.mkdir(parents=True, exist_ok=True)
    times_file.write_text(json.dumps(seconds))
    if "evaluate" not in args.phases:
        return
    jobs = [
        (f"{kind}_eval_{m}", [py, evaluate, m], w, "")
        for kind, w in [("single", single), ("ddp", ddp)]
        for m in args.methods
    ]
    for i in range(0, len(jobs), n):
        seconds.update(side_by_side([(*job[:3], str(k)) for k, job in enumerate(jobs[i:i + n])]))

    def read(w: Path, sub: str, m: str) -> dict:
        return json.loads((w / "metrics" / sub / f"{m}.json").read_text())

    global_batch = {
        m: v["batch_size"] for m, v in yaml.safe_load((single / "params.yaml").read_text())["train"].items()
    }
    methods = {}
    for m in args.methods:
        t1, tn = read(single, "train", m), read(ddp, "train", m)
        e1, en = read(single, "eval", m), read(ddp, "eval", m)
        speedup = tn["tokens_per_second"] / t1["tokens_per_second"]
        methods[m] = {
            "global_batch": global_batch[m],
            "one_gpu": {
                k: t1[k] for k in ("steps", "train_seconds", "tokens_per_second", "peak_memory_mb", "final_val_loss")
            },
            "n_gpus": {
                **{
                    k: tn[k]
                    for k in ("steps", "train_seconds", "tokens_per_second", "peak_memory_mb", "final_val_loss")
                },
                "tokens_per_second_per_gpu": round(tn["tokens_per_second"] / n, 1),
                "launch_seconds": seconds.get(f"ddp_train_{m}"),
            },
            "speedup": round(speedup, 3),
            "scaling_efficiency": round(speedup / n, 3),
            "wall_speedup": round(t1["train_seconds"] / tn["train_seconds"], 3),
            "quality_one_gpu": {k: e1[k] for k in QUALITY},
            "quality_n_gpus": {k: en[k] for k in QUALITY},
            "rouge_l_difference": round(en["rouge_l"] - e1["rouge_l"], 2),
        }
    record = {"notes": f"full configuration: each method trained on 1 GPU and with DDP on {n} GPUs (accelerate "
                      "launch, configs/accelerate/ddp.yaml), same seed and global batch; peak memory is the main "
                      "process's GPU; quality on the same test split", "gpus": n, "machine": records.gpu_facts(),
              "topology": subprocess.run(["nvidia-smi", "topo", "-m"], capture_output=True, text=True).stdout,
              "versions": records.versions(), "nccl_nvls_enable": 0, "methods": methods, "seconds": seconds}
    records.save("gpu_ddp", record)
    print(json.dumps(methods, indent=2))


if __name__ == "__main__":
    main()
