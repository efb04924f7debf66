"""What the retrieved examples buy: the default pipeline against a real `dvc exp run -S retrieval.k=0`.

    python benchmarks/retrieval_ablation.py            # runs the experiment (temp dir), writes a record
    python benchmarks/retrieval_ablation.py --name N   # only read an experiment already run under name N

The default side is the workspace's metrics (the committed run of the default params); the k=0 side
is the experiment's, read from its git ref. Writes a record to benchmarks/results/retrieval_ablation/ with the
commit, the date and the CPU."""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KEYS = ["rouge_l", "semantic_similarity", "bleu", "distinct_replies", "distinct_2", "placeholder_rate",
        "latency_p50_ms"]
SYSTEMS, METHODS = ["zero_shot", "retrieval", "qlora", "prompt_tuning"], ["qlora", "prompt_tuning"]


def git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout


def side(read) -> dict:
    """Metrics of one run, `read(path)` giving a metrics file's text."""
    evals = {s: json.loads(read(f"metrics/eval/{s}.json")) for s in SYSTEMS}
    trains = {m: json.loads(read(f"metrics/train/{m}.json")) for m in METHODS}
    return {"systems": {s: {k: e.get(k) for k in KEYS} for s, e in evals.items()},
            "training": {m: {k: t[k] for k in ("train_seconds", "final_val_loss")} for m, t in trains.items()}}


def main() -> None:
    from supportagent.reporting import records
    from supportagent.config import load_params

    ap = argparse.ArgumentParser()
    ap.add_argument("--name", help="read this experiment instead of running one")
    args = ap.parse_args()
    name = args.name or f"retrieval-k0-{time.strftime('%Y%m%d-%H%M')}"
    command = f"dvc exp run --temp -n {name} -S retrieval.k=0"
    start = time.perf_counter()
    if not args.name:
        dvc = str(Path(sys.executable).parent / "dvc")
        subprocess.run([dvc, *command.split()[1:]], cwd=ROOT, check=True)
    seconds = round(time.perf_counter() - start, 1)
    refs = [r for r in git("for-each-ref", "--format=%(refname)", "refs/exps/").split() if r.endswith("/" + name)]
    if not refs:
        sys.exit(f"no experiment named {name}: see `dvc exp list`")
    retrieval = load_params(ROOT / "params.yaml").retrieval
    record = {
        "notes": "the default pipeline (retrieved examples in every LLM prompt) against the same pipeline with "
                "retrieval.k=0 (no examples), same data, seed and code",
        "command": command, "experiment_ref": refs[0], "experiment_seconds": seconds if not args.name else None,
        "machine": records.cpu_facts(),
        "default": {"retrieval": retrieval.model_dump(), **side(lambda p: (ROOT / p).read_text())},
        "k0": {"retrieval": {**retrieval.model_dump(), "k": 0}, **side(lambda p: git("show", f"{refs[0]}:{p}"))},
    }
    records.save("retrieval_ablation", record)
    for label in ("k0", "default"):
        print(label, {s: (v["rouge_l"], v["semantic_similarity"]) for s, v in record[label]["systems"].items()})


if __name__ == "__main__":
    main()
