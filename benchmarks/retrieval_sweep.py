"""What retrieved examples buy: the whole pipeline per `retrieval` setting, several settings side by side.

    python benchmarks/retrieval_sweep.py                          # default data
    python benchmarks/retrieval_sweep.py --label full --base-overrides configs/full.yaml --variants k0 k2_pair

Each variant is params.yaml (+ --base-overrides) with the variant's keys merged in, run by
benchmarks/gpu_pipeline.py (the stage scripts as DVC runs them) in its own work folder; up to
--parallel variants run at once (one GPU holds several 135M pipelines). Records per system ROUGE-L,
semantic similarity, distinct replies, placeholder rate and the training seconds, with GPU facts, in a record
(benchmarks/results/retrieval_sweep/)."""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = {
    "k0": {"retrieval": {"k": 0}},
    "k1_pair": {"retrieval": {"k": 1, "fields": "pair"}},
    "k2_pair": {"retrieval": {"k": 2, "fields": "pair"}},
    "k2_reply": {"retrieval": {"k": 2, "fields": "reply"}},
    "k3_reply": {"retrieval": {"k": 3, "fields": "reply"}},
}
KEYS = ["rouge_l", "semantic_similarity", "bleu", "distinct_replies", "distinct_2", "placeholder_rate", "avg_words"]


def run_variant(name: str, args) -> dict:
    from supportagent.config import merge, read_raw

    work = Path(args.workdir) / name
    work.mkdir(parents=True, exist_ok=True)
    overrides = merge(
        yaml.safe_load(Path(args.base_overrides).read_text()) if args.base_overrides else {}, VARIANTS[name]
    )
    (work / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    read_raw(ROOT / "params.yaml", work / "overrides.yaml")  # fails early on a broken file
    out = work / "record.json"
    with open(work / "runner.log", "w") as log:
        proc = subprocess.run(
            [
                sys.executable,
                str(ROOT / "benchmarks/gpu_pipeline.py"),
                "--out",
                str(out),
                "--no-record",
                "--label",
                name,
                "--overrides",
                str(work / "overrides.yaml"),
                "--workdir",
                str(work),
                "--stages",
                *args.stages,
                "--jobs",
                str(args.jobs),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    if proc.returncode or not out.exists():
        return {"failed": True, "log_tail": (work / "runner.log").read_text()[-2000:]}
    rec = json.loads(out.read_text())
    m = rec["metrics"]
    return {
        "overrides": overrides,
        "wall_seconds": rec["wall_seconds"],
        "stage_seconds": rec["stage_seconds"],
        "systems": {k.split("/")[1]: {x: v.get(x) for x in KEYS} for k, v in m.items() if k.startswith("eval/")},
        "training": {
            k.split("/")[1]: {x: v.get(x) for x in ("train_seconds", "final_val_loss", "tokens_per_second")}
            for k, v in m.items()
            if k.startswith("train/")
        },
        "machine": rec["machine"],
        "versions": rec["versions"],
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--label", default="", help="added to the record's file name")
    ap.add_argument("--variants", nargs="*", default=list(VARIANTS), help=f"names of {list(VARIANTS)}")
    ap.add_argument("--variant", action="append", default=[], metavar="NAME=YAML",
                    help="an extra variant, e.g. 'k3_2ep={retrieval: {k: 3}, train: {qlora: {epochs: 2}}}'")
    ap.add_argument(
        "--base-overrides", help="params that differ from params.yaml for every variant (configs/full.yaml)"
    )
    ap.add_argument("--workdir", default="build/retrieval_sweep")
    ap.add_argument("--parallel", type=int, default=5)
    ap.add_argument("--stages", nargs="*", default=["all"], help="stages of each variant (default: all)")
    ap.add_argument("--jobs", type=int, default=2, help="stages at once inside each variant")
    args = ap.parse_args()
    for spec in args.variant:
        name, body = spec.split("=", 1)
        VARIANTS[name] = yaml.safe_load(body)
        args.variants.append(name)
    start = time.perf_counter()
    with ThreadPoolExecutor(args.parallel) as pool:
        results = dict(zip(args.variants, pool.map(lambda v: run_variant(v, args), args.variants)))
    from supportagent.reporting import records

    record = {"notes": "the whole pipeline per retrieval setting", "overrides": args.base_overrides,
              "machine": records.machine_facts(), "versions": records.versions(), "parallel": args.parallel,
              "stages": args.stages, "wall_seconds": round(time.perf_counter() - start, 1), "variants": results}
    records.save("retrieval_sweep", record, label=args.label)
    for name, r in results.items():
        if r.get("failed"):
            print(name, "FAILED", r["log_tail"][-800:])
            continue
        print(name, {s: (v["rouge_l"], v["semantic_similarity"], v["distinct_replies"], v["placeholder_rate"])
                     for s, v in r["systems"].items()}, r["training"])


if __name__ == "__main__":
    main()
