"""GPU sweep of the `full` configuration's QLoRA settings, each judged on the validation split.

    python benchmarks/gpu_pipeline.py --label prep --overrides configs/full.yaml --workdir W \
        --stages subset split rules index base
    python benchmarks/full_sweep.py --workdir W [--variants as_is k_4]
    python benchmarks/full_sweep.py --workdir W --rescore
    python benchmarks/full_sweep.py --workdir W --selection
    python benchmarks/full_sweep.py --workdir W --candidates 32 --variants as_is seed_43 seed_44 soup_2 soup_3

Each variant changes a few keys of W/params.yaml (params.yaml merged with configs/full.yaml), trains QLoRA as
the `train` stage does and evaluates the served reply on the validation split with each of its numbers of
reranked candidates (`evaluate.candidates`). The test split is not looked at: the configuration chosen here goes
into configs/full.yaml, and its pipeline run (`gpu_pipeline.py --stages all`) reports the test split. Variants
train in parallel processes on the one GPU, and a variant's evaluations run in parallel too; with `--deadline`
what has finished by then is recorded. Each run writes a record to benchmarks/results/full_sweep/.

Every evaluation with candidates keeps them (W/sweep/<variant>/candidates_<n>.json). `--rescore` chooses again
among the first m sampled of those (m = 0: the greedy reply; the same draws, so the numbers of candidates are
compared without the noise of new draws or new training) and records the scores as a run of its own.

`--selection` chooses again among all kept candidates with other references and weights (`selection_grid`: how
many past replies the candidates are compared with, how much each weighs, ROUGE-L against cosine), the grid that
chose `evaluate.rerank_*`.

A soup (SOUPS) averages the LoRA updates of variants trained in the same run, e.g. the same settings with other
seeds, into one adapter (`lora_soup`); it is evaluated like a variant. Every evaluation's draws are seeded by the
workdir's seed, whatever seed the variant trained with."""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import yaml

from supportagent.reporting import records

ROOT = Path(__file__).resolve().parents[1]

# name: (dotted params keys to change, candidate counts evaluated)
VARIANTS = {
    "as_is": ({}, [16, 48]),
    "epochs_2": ({"train.qlora.epochs": 2}, [16]),
    "lr_0.001": ({"train.qlora.lr": 0.001}, [16]),
    "lora_dropout_0.1": ({"train.qlora.lora_dropout": 0.1}, [16]),
    "k_4": ({"retrieval.k": 4}, [16]),
    "epochs_4": ({"train.qlora.epochs": 4}, [48]),
    "lora_r_64": ({"train.qlora.lora_r": 64, "train.qlora.lora_alpha": 128}, [32]),  # alpha / r as the default's
    "seed_43": ({"seed": 43}, [32]),
    "seed_44": ({"seed": 44}, [32]),
}
# name: (variants whose LoRA updates are averaged, candidate counts evaluated): a soup (Wortsman et al. 2022)
SOUPS = {"soup_2": (["as_is", "seed_43"], [32]), "soup_3": (["as_is", "seed_43", "seed_44"], [32])}
KEYS = ["rouge_l", "semantic_similarity", "bleu", "distinct_replies", "distinct_2", "placeholder_rate", "avg_words",
        "truncated_share"]


def variant_params(work: Path, changes: dict):
    """W/params.yaml with `changes` (dotted keys) merged in, validated by the one schema (an unknown key fails)."""
    from supportagent.config import Params, merge

    nested = records.unflatten(changes)
    return Params.model_validate(merge(yaml.safe_load((work / "params.yaml").read_text()), nested))


def _setup(work: Path, changes: dict):
    """A variant's params, the workdir's paths, and its train and validation splits."""
    import pandas as pd

    from supportagent.paths import pipeline_paths

    paths = {k: work / v for k, v in pipeline_paths(ROOT / "dvc.yaml").items()}
    tr, va = (pd.read_parquet(paths["splits"] / f"{s}.parquet") for s in ("train", "val"))
    return variant_params(work, changes), paths, tr, va


def changes(name: str) -> dict:
    """The params keys variant `name` changes (a soup changes none: it averages variants)."""
    return VARIANTS[name][0] if name in VARIANTS else {}


def counts(name: str, override: int) -> list[int]:
    """The candidate counts variant or soup `name` is evaluated with (`--candidates` overrides them)."""
    return [override] if override else (SOUPS.get(name) or VARIANTS[name])[1]


def lora_soup(folders: list[Path], out: Path) -> None:
    """One LoRA adapter whose update is the mean of the `folders`' updates (same base, rank and alpha): their
    A matrices, each divided by their number, stacked, and their B matrices side by side, in an adapter of the
    summed rank and alpha (the same scaling), so that B'A' = mean(B_i A_i) exactly."""
    import shutil

    import torch
    from safetensors.torch import load_file, save_file

    n, config = len(folders), json.loads((folders[0] / "adapter_config.json").read_text())
    for f in folders[1:]:
        other = json.loads((f / "adapter_config.json").read_text())
        if sorted(other["target_modules"]) != sorted(config["target_modules"]) or any(
                other[k] != config[k] for k in ("r", "lora_alpha", "use_rslora")):  # the modules: a set, any order
            sys.exit(f"{f} and {folders[0]} differ in rank, alpha or modules: a soup needs the same LoRA settings")
    weights = [load_file(f / "adapter_model.safetensors") for f in folders]
    soup = {key: (torch.cat([w[key] / n for w in weights], 0) if ".lora_A." in key else
                  torch.cat([w[key] for w in weights], 1)) for key in weights[0]}
    out.mkdir(parents=True, exist_ok=True)
    shutil.copy(folders[0] / "training_info.json", out / "training_info.json")
    (out / "adapter_config.json").write_text(json.dumps(config | {"r": config["r"] * n,
                                                                   "lora_alpha": config["lora_alpha"] * n}))
    save_file(soup, out / "adapter_model.safetensors")


def soup_variant(work: Path, name: str, override: int) -> None:
    """Average the updates of the soup's variants (trained already) into one adapter, and evaluate it."""
    members = [work / "sweep" / m for m in SOUPS[name][0]]
    out = work / "sweep" / name
    lora_soup([m / "adapter" for m in members], out / "adapter")
    (out / "training.json").write_text(json.dumps({"soup_of": SOUPS[name][0]}))
    evals = [subprocess.Popen([sys.executable, __file__, "--workdir", str(work), "--out", "-", "--eval", name, str(n)])
             for n in counts(name, override)]
    sys.exit(max(e.wait() for e in evals))


def train_variant(work: Path, name: str, override: int) -> None:
    """Train variant `name` (`training.json` in its folder), then evaluate it with each of its candidate counts at
    once, one process each (`val_<n>.json`)."""
    from supportagent.model.training import train

    p, paths, tr, va = _setup(work, changes(name))
    out = work / "sweep" / name
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    metrics = train("qlora", tr, va, paths["base"], paths["index"], out / "adapter", p.train.qlora, p.model, p.rules,
                    p.retrieval, p.seed, out / "logs", checkpoint_root=out / "checkpoints")
    losses = (out / "logs/plots/metrics/eval/loss.tsv").read_text().split()[2:]  # after the header "step loss"
    (out / "training.json").write_text(json.dumps({
        "train_seconds": round(time.perf_counter() - start, 1), "final_train_loss": metrics["final_train_loss"],
        "val_loss": [[int(s), round(float(v), 4)] for s, v in zip(losses[::2], losses[1::2])]}))
    evals = [subprocess.Popen([sys.executable, __file__, "--workdir", str(work), "--out", "-", "--eval", name, str(n)])
             for n in counts(name, override)]
    sys.exit(max(e.wait() for e in evals))


def evaluate_variant(work: Path, name: str, n: int) -> None:
    """The variant's served reply on the validation split with `n` candidates. With candidates, every message's
    candidates and references go to `candidates_<n>.json`, so other selections can be scored from them later."""
    from supportagent.inference import reranking
    from supportagent.evaluation.evaluate import evaluate_system

    p, paths, tr, va = _setup(work, changes(name))
    out = work / "sweep" / name
    seen = []
    original = reranking.rankings

    def recording(candidates, references, **weights):  # serving binds the embedder and weights by keyword
        ranked = original(candidates, references, **weights)
        seen.extend(
            {"candidates": c, "references": r, "chosen": o[0]} for c, r, o in zip(candidates, references, ranked)
        )
        return ranked

    reranking.rankings = recording  # serving.ready_to_serve looks it up when it builds the reranker
    # the draws of every variant are seeded alike (params' seed of the workdir), whatever seed it trained with
    pe = p.model_copy(update={"evaluate": p.evaluate.model_copy(update={"candidates": n, "latency_samples": 0}),
                              "seed": variant_params(work, {}).seed})
    start = time.perf_counter()
    ev, rows = evaluate_system("qlora", pe, va, tr, str(paths["base"]), str(paths["index"]), str(out / "adapter"))
    result = {k: ev[k] for k in KEYS} | {"n": ev["n"], "seconds": round(time.perf_counter() - start, 1)}
    (out / f"val_{n}.json").write_text(json.dumps(result))
    if seen:  # the reranker sees messages longest prompt first: each goes back to its row by its references and reply
        pools, k = {}, p.retrieval.k  # a message's references begin with its prompt's examples' replies
        for s in seen:
            pools.setdefault((tuple(s["references"][:k]), s["candidates"][s["chosen"]]), []).append(s)
        reply = tr.set_index("pair_id")["reply"]
        dump = [{"pair_id": int(r.pair_id), "reference": r.reference,
                 **pools[(tuple(reply[list(r.examples)]), r.unguarded)].pop(0)} for r in rows.itertuples()]
        (out / f"candidates_{n}.json").write_text(json.dumps(dump))
    print(name, n, result, flush=True)


def collect(work: Path, name: str) -> dict | None:
    """What variant `name` has recorded so far (None before its training ends)."""
    out = work / "sweep" / name
    if not (out / "training.json").exists():
        return None
    return {"variant": name, "changes": changes(name), **json.loads((out / "training.json").read_text()),
            "val": {f.stem.split("_")[1]: json.loads(f.read_text()) for f in sorted(out.glob("val_*.json"))}}


def retrieval_baseline(work: Path) -> dict:
    """The retrieval baseline on the validation split: the yardstick the variants are read against."""
    from supportagent.evaluation.evaluate import evaluate_system

    p, paths, tr, va = _setup(work, {})
    ev, _ = evaluate_system("retrieval", p, va, tr, str(paths["base"]), str(paths["index"]))
    return {k: ev[k] for k in KEYS} | {"n": ev["n"]}


def rescore(work: Path, ms=(0, 4, 8, 16, 32, 48)) -> dict:
    """Every kept candidate set chosen from again with its first m sampled candidates (reranking.consensus, as
    served): validation ROUGE-L and semantic similarity per variant and m. For each soup whose variants kept
    candidates, also their pooled candidates (`pooled/<soup>/<n>`: each variant's greedy reply and first n / their
    number sampled, as many as one variant's n): an ensemble of the variants' replies instead of one of their
    updates."""
    from supportagent.model import models
    from supportagent.evaluation.metrics import cosine, rouge_l
    from supportagent.inference.reranking import consensus

    embedder, out, ev = models.load_embedder(), {}, variant_params(work, {}).evaluate

    def score(pools: list[list[str]], refs: list[list[str]], references: list[str], greedy: bool = False) -> dict:
        chosen = [0] * len(pools) if greedy else consensus(pools, refs, embedder, word_weight=ev.rerank_word_weight,
                                                           reference_weight=ev.rerank_reference_weight)
        replies = [pool[i] for pool, i in zip(pools, chosen)]
        return {"rouge_l": round(float(np.mean(rouge_l(replies, references))), 2),
                "semantic_similarity": round(float(np.mean(cosine(embedder, replies, references))), 2)}

    for f in sorted((work / "sweep").glob("*/candidates_*.json")):
        kept, scores = json.loads(f.read_text()), {}
        references, refs = [k["reference"] for k in kept], [k["references"] for k in kept]
        for m in [c for c in ms if c < len(kept[0]["candidates"])]:
            scores[str(m)] = score([k["candidates"][: m + 1] for k in kept], refs, references, greedy=not m)
            print(f.parent.name, f.stem, m, scores[str(m)], flush=True)
        out[f"{f.parent.name}/{f.stem}"] = scores
    for soup, (members, _) in SOUPS.items():
        for n in sorted({int(f.stem.split("_")[1]) for f in (work / "sweep" / members[0]).glob("candidates_*.json")}):
            files = [work / "sweep" / m / f"candidates_{n}.json" for m in members]
            if not all(f.exists() for f in files):
                continue
            kept = [json.loads(f.read_text()) for f in files]
            if any([k["pair_id"] for k in other] != [k["pair_id"] for k in kept[0]] for other in kept):
                sys.exit(f"{soup}: its variants' candidates are not of the same messages")
            references, refs = [k["reference"] for k in kept[0]], [k["references"] for k in kept[0]]
            m = n // len(members)
            pools = [sum((k[i]["candidates"][: m + 1] for k in kept), []) for i in range(len(references))]
            out[f"pooled/{soup}/{n}"] = score(pools, refs, references) | {"per_variant": m, "pool": len(pools[0])}
            print("pooled", soup, n, out[f"pooled/{soup}/{n}"], flush=True)
    return out


def selection_grid(work: Path, refs_n=(0, 2, 4, 8, 16), word_weights=(0.25, 0.5, 0.75, 1.0),
                   reference_weights=(1.0, 2.0, 4.0, 8.0)) -> dict:
    """Every kept candidate set (all its candidates) chosen from again by `reranking.choose` with other
    references and weights: the replies of the R nearest past pairs of the brand (the index of the workdir's train
    split, as evaluation finds them), each weighing x candidates, and similarity w x ROUGE-L + (1 - w) x cosine.
    Validation ROUGE-L, semantic similarity and distinct replies per `R<R>_w<w>_x<x>`."""
    from supportagent.model import models
    from supportagent.benchmark_tables import selection_key
    from supportagent.evaluation.metrics import cosine, distinct_replies, rouge_l
    from supportagent.inference.reranking import choose, similarities
    from supportagent.data.retrieval import ExampleIndex

    p, paths, tr, va = _setup(work, {})
    embedder, out = models.load_embedder(), {}
    index = ExampleIndex(paths["index"], tr, models.embedder_id())
    for f in sorted((work / "sweep").glob("*/candidates_*.json")):
        kept = json.loads(f.read_text())
        rows = va.set_index("pair_id").loc[[k["pair_id"] for k in kept]]
        _, found = index.examples_and_references(embedder, rows["customer"].tolist(), rows["brand"].tolist(),
                                                 p.retrieval, max(refs_n))
        sims = similarities([k["candidates"] for k in kept], found, embedder)  # each setting takes its first R refs
        # every candidate scored against its message's reference once; a setting then looks its choices up
        cands = [c for k in kept for c in k["candidates"]]
        truth = [k["reference"] for k in kept for _ in k["candidates"]]
        starts = np.cumsum([0] + [len(k["candidates"]) for k in kept])
        scores = {"rouge_l": np.array(rouge_l(cands, truth)), "semantic_similarity": cosine(embedder, cands, truth)}
        grid = {}
        for r in refs_n:
            for w in word_weights:
                for x in (reference_weights if r else reference_weights[:1]):
                    at = [start + choose(s, word_weight=w, reference_weight=x, references=r)
                          for s, start in zip(sims, starts)]
                    key = selection_key(r, w, x)
                    grid[key] = {**{m: round(float(np.mean(v[at])), 2) for m, v in scores.items()},
                                 "distinct_replies": round(distinct_replies([cands[i] for i in at]), 2)}
                    print(f.parent.name, f.stem, key, grid[key], flush=True)
        out[f"{f.parent.name}/{f.stem}"] = grid
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workdir", required=True, help="a gpu_pipeline.py workdir of configs/full.yaml with its splits, "
                                                     "base and index")
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=[*VARIANTS, *SOUPS],
                    help="variants to train, and soups (whose variants must be listed too)")
    ap.add_argument("--candidates", type=int, default=0, help="evaluate every variant with this many candidates "
                                                                 "instead of its own counts")
    ap.add_argument("--deadline", type=float, default=0, help="seconds after which unfinished variants are stopped "
                                                                   "and recorded as far as they got (0 = none)")
    ap.add_argument("--rescore", action="store_true", help="score the kept candidates' subsets (no GPU needed)")
    ap.add_argument("--selection", action="store_true", help="choose among the kept candidates with other references "
                                                              "and weights (no GPU needed)")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    ap.add_argument("--soup", help=argparse.SUPPRESS)
    ap.add_argument("--eval", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    work = Path(args.workdir).resolve()
    if args.one:
        return train_variant(work, args.one, args.candidates)
    if args.soup:
        return soup_variant(work, args.soup, args.candidates)
    if args.eval:
        return evaluate_variant(work, args.eval[0], int(args.eval[1]))
    command = " ".join(["python benchmarks/full_sweep.py", *("W" if Path(a).resolve() == work else a
                                                              for a in sys.argv[1:])])
    setup = {"variants": {name: {"changes": c, "candidates": n} for name, (c, n) in VARIANTS.items()},
             "soups": {name: {"of": of, "candidates": n} for name, (of, n) in SOUPS.items()}}
    notes = (__doc__.split("\n")[0] + " params.yaml + configs/full.yaml, each variant's changes on top; QLoRA; "
             "validation split")
    missing = [m for name in args.variants if name in SOUPS for m in SOUPS[name][0] if m not in args.variants]
    if missing:
        sys.exit(f"a soup needs its variants trained in the same run: add {' '.join(missing)} to --variants")
    for flag, key, scores in (("rescore", "candidate_subsets", rescore), ("selection", "selection", selection_grid)):
        if getattr(args, flag):  # scores of the kept candidates of the workdir's last sweep: a run of their own
            records.save("full_sweep", {key: scores(work), "notes": notes}, label=flag, command=command)
            return
    run = {"command": command, "machine": records.gpu_facts(), "versions": records.versions(), "notes": notes,
           "setup": setup, "variants_run": args.variants, "candidates": args.candidates or None, "results": []}
    start = time.perf_counter()
    def launch(name: str) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, __file__, "--workdir", str(work),
                                 "--soup" if name in SOUPS else "--one", name, "--candidates", str(args.candidates)],
                                stdout=open(work / f"sweep_{name}.log", "w"), stderr=subprocess.STDOUT,
                                start_new_session=True)  # a group of its own: the deadline stops its evaluations too

    procs = {name: launch(name) for name in args.variants if name not in SOUPS}
    soups = [name for name in args.variants if name in SOUPS]  # each starts once its variants have trained
    run["retrieval_val"] = retrieval_baseline(work)
    while soups or any(proc.poll() is None for proc in procs.values()):
        for name in list(soups):
            trained = [(work / "sweep" / m / "training.json").exists() for m in SOUPS[name][0]]
            if all(trained):
                procs[name] = launch(name)
            elif not any(procs[m].poll() is None for m, t in zip(SOUPS[name][0], trained) if not t):
                print(f"{name}: not made, a variant of it did not finish training")
            else:
                continue
            soups.remove(name)
        if args.deadline and time.perf_counter() - start > args.deadline:
            for proc in procs.values():
                if proc.poll() is None:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
            break
        time.sleep(2)
    for name, proc in procs.items():
        if proc.returncode:
            print(f"{name}: rc {proc.returncode}\n" + (work / f"sweep_{name}.log").read_text()[-2000:])
        if (found := collect(work, name)) is not None:
            run["results"].append(found | {"complete": len(found["val"]) == len(counts(name, args.candidates))})
    run["seconds"] = round(time.perf_counter() - start, 1)
    records.save("full_sweep", run)
    print(json.dumps(run["results"], indent=1))


if __name__ == "__main__":
    main()
