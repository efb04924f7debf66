"""Run the pipeline's stages outside DVC (e.g. on a GPU machine without DVC) and record wall time per stage.

The stage scripts run in dvc.yaml's order in a working folder (default: the project itself). With
`--overrides configs/full.yaml` the folder gets params.yaml merged with those keys, so a second
configuration runs beside the default one without touching its outputs. Every metrics file and
the timings are gathered into one record (benchmarks/results/gpu_pipeline/) with GPU, driver and package
versions; `--collect DIR` copies the metrics files into DIR (e.g. metrics/full), and the served method's and
retrieval's predictions into DIR/predictions/.

    python benchmarks/gpu_pipeline.py                                    # model stages, default params
    python benchmarks/gpu_pipeline.py --label full --overrides configs/full.yaml \
        --workdir build/full --stages all --collect metrics/full
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

from supportagent.reporting import records

ROOT = Path(__file__).resolve().parents[1]


def overlaps(a: str, b: str) -> bool:
    """Whether two project paths are one, or one holds the other."""
    return a == b or a.startswith(b + "/") or b.startswith(a + "/")


def stage_graph(dvc_yaml: Path = ROOT / "dvc.yaml") -> dict[str, dict]:
    """Every stage of dvc.yaml (foreach expanded, e.g. `train@qlora`) with its command and the stages
    it needs (those whose outputs it depends on), in dvc.yaml's order: dvc.yaml is the one source."""
    from supportagent.paths import interpolate, pipeline_paths

    from supportagent.config import read_raw

    stages, where = {}, pipeline_paths(dvc_yaml)
    params = read_raw(dvc_yaml.parent / "params.yaml")
    for name, spec in yaml.safe_load(dvc_yaml.read_text())["stages"].items():
        body, items = (spec["do"], spec["foreach"]) if "foreach" in spec else (spec, None)
        if isinstance(items, str):  # `foreach: ${train}`: a group of params.yaml
            items = {key: {} for key in params[items.strip("${}")]}
        expanded = (
            [(name, {})]
            if items is None
            else [
                (
                    f"{name}@{key}",
                    {
                        "${item}": str(key),
                        "${key}": str(key),
                        **{
                            f"${{item.{k}}}": str(v) for k, v in (items[key] if isinstance(items, dict) else {}).items()
                        },
                    },
                )
                for key in items
            ]
        )
        for stage, subs in expanded:
            def fill(text: str) -> str:
                for k, v in subs.items():
                    text = text.replace(k, interpolate(v, where))
                return interpolate(text, where)
            paths = lambda key: [fill(next(iter(x)) if isinstance(x, dict) else x) for x in body.get(key, [])]
            stages[stage] = {"cmd": fill(body["cmd"]), "deps": paths("deps"),
                             "outs": paths("outs") + paths("metrics") + paths("plots")}
    for spec in stages.values():
        spec["needs"] = [other for other, o in stages.items()
                         if any(overlaps(d, out) for d in spec["deps"] for out in o["outs"])]
    return stages


STAGES = stage_graph()
MODEL_STAGES = [s for s in STAGES if s.split("@")[0] in ("base", "train", "evaluate")]


def stage_env(work: Path) -> dict:
    """The environment a stage script runs in, outside DVC: the project's package, params from `work`."""
    return {**os.environ, "PYTHONUNBUFFERED": "1", "SUPPORTAGENT_PARAMS": str(work / "params.yaml"),
            "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}


def link_inputs(work: Path) -> None:
    """Link into `work` the project's own inputs that no stage makes (the raw csv, the labelled sets, the
    review's ratings): the stages then read them at the paths dvc.yaml names."""
    made = {out for spec in STAGES.values() for out in spec["outs"]}
    for dep in {d for spec in STAGES.values() for d in spec["deps"]}:
        # a folder that holds a stage's output (e.g. metrics/eval) is made in `work`, never linked to the project's
        if dep.split("/")[0] in ("src", "stages") or any(overlaps(dep, out) for out in made):
            continue
        if (ROOT / dep).exists() and not (work / dep).exists():
            (work / dep).parent.mkdir(parents=True, exist_ok=True)
            (work / dep).symlink_to(ROOT / dep)


def run_stages(selected: list[str], work: Path, env: dict, jobs: int) -> dict[str, float]:
    """Run the stages' commands in `work`; up to `jobs` at once, each as soon as the selected stages it
    needs have finished. Returns wall seconds per stage; stops at the first failure (logs in work/logs)."""
    (work / "logs").mkdir(parents=True, exist_ok=True)
    pending, running, timings = list(selected), {}, {}
    while pending or running:
        for name in list(pending):
            ready = all(n in timings for n in STAGES[name]["needs"] if n in selected)
            if ready and len(running) < jobs:
                argv = STAGES[name]["cmd"].split()
                log = open(work / "logs" / f"{name}.log", "w")
                proc = subprocess.Popen([sys.executable, str(ROOT / argv[1]), *argv[2:]], cwd=work, env=env,
                                        stdout=log, stderr=subprocess.STDOUT, text=True)
                running[name] = (proc, time.perf_counter(), log)
                pending.remove(name)
        time.sleep(0.2)
        for name, (proc, start, log) in list(running.items()):
            if proc.poll() is None:
                continue
            log.close()
            del running[name]
            timings[name] = round(time.perf_counter() - start, 1)
            print(f"{name}: {timings[name]} s (rc {proc.returncode})", flush=True)
            if proc.returncode:
                print((work / "logs" / f"{name}.log").read_text()[-5000:])
                for other, *_ in running.values():
                    other.kill()
                return timings
    return timings


def reviewable(src: Path, dst: Path) -> None:
    """A predictions file without each message's sampled candidates: the replies, guard paths and reasons that a
    review reads, small enough for git (the candidates stay in the work folder)."""
    rows = (json.loads(line) for line in src.read_text().splitlines() if line.strip())
    dst.write_text("".join(json.dumps({k: v for k, v in r.items() if k != "candidates"}) + "\n"
                           for r in rows))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--no-record", action="store_true", help="run the stages only (e.g. to prepare a workdir)")
    ap.add_argument("--out", help="also write the run, its metrics files included, to this JSON file (for a script "
                                  "that runs this one)")
    ap.add_argument("--label", default="default")
    ap.add_argument("--commit", help="the commit the tree is at, where its git history does not tell (a copied tree)")
    ap.add_argument("--stages", nargs="*", default=MODEL_STAGES, choices=[*STAGES, "all"],
                    help="stage names in dvc.yaml's order; default: the model stages; all: every stage")
    ap.add_argument("--overrides", help="a file of params that differ from params.yaml, e.g. configs/full.yaml")
    ap.add_argument("--workdir", default=str(ROOT), help="where the stages read and write (default: the project)")
    ap.add_argument("--jobs", type=int, default=1,
                    help="stages run at once once their inputs exist (1 = one by one, as `dvc repro`)")
    ap.add_argument("--collect", help="copy the metrics files, and the served and retrieval predictions, here "
                                      "afterwards, e.g. metrics/full")
    args = ap.parse_args()
    work = Path(args.workdir).resolve()
    from supportagent.paths import pipeline_paths

    where = pipeline_paths(ROOT / "dvc.yaml")
    if work != ROOT:
        from supportagent.config import read_raw

        work.mkdir(parents=True, exist_ok=True)
        (work / "params.yaml").write_text(
            yaml.safe_dump(read_raw(ROOT / "params.yaml", args.overrides), sort_keys=False)
        )
        link_inputs(work)
    elif args.overrides:
        sys.exit("--overrides needs a --workdir other than the project (the default outputs stay as DVC made them)")
    env = stage_env(work)
    selected = list(STAGES) if args.stages == ["all"] else args.stages
    start_all = time.perf_counter()
    timings = run_stages(selected, work, env, args.jobs)
    wall = round(time.perf_counter() - start_all, 1)
    metrics = {}
    for sub in ("train", "eval"):
        for f in sorted((work / where["metrics"] / sub).glob("*.json")):
            metrics[f"{sub}/{f.stem}"] = json.loads(f.read_text())
    if args.collect:
        dest = Path(args.collect)
        for f in (work / where["metrics"]).rglob("*.json"):
            target = dest / f.relative_to(work / where["metrics"])
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(f, target)
        served = json.loads((work / where["metrics"] / "comparison.json").read_text())["served_method"]
        (dest / "predictions").mkdir(exist_ok=True)
        for system in (served, "retrieval"):  # the served replies and the baseline's, for a review of this run
            reviewable(work / where["predictions"] / f"{system}.jsonl", dest / "predictions" / f"{system}.jsonl")
    record = {"overrides": yaml.safe_load(Path(args.overrides).read_text()) if args.overrides else {},
              "machine": records.machine_facts(), "versions": records.versions(), "stage_seconds": timings,
              "model_stages_seconds": round(sum(timings.values()), 1), "jobs": args.jobs, "wall_seconds": wall,
              "metrics": metrics, **({"commit": args.commit} if args.commit else {})}
    print(
        json.dumps({k: record[k] for k in ("stage_seconds", "model_stages_seconds", "jobs", "wall_seconds")}, indent=2)
    )
    if args.out:
        Path(args.out).write_text(json.dumps(record, indent=2) + "\n")
    if not args.no_record:
        records.save("gpu_pipeline", record, label=args.label)


if __name__ == "__main__":
    main()
