"""Can a small learned scorer tell the reply that fits a message from the brand's other replies better than the
MiniLM cosine the reranker and the relevance metric already read?

    python benchmarks/fit_scorer.py
    python benchmarks/fit_scorer.py --workdir build/full   # the full configuration's splits (gpu_pipeline.py)

Trains logistic regressions on the train split (evaluation/fit.py: each message's real reply against `--negatives`
replies of its brand to other messages, and, for a message that reports a problem, one cheering reply) and measures
each on the validation split by AUC (the chance the real reply outscores a negative): the cosine alone; the cosine
with two mood features (a cheering reply to a troubled message, an apology to a pleased one); and the pair's
769 MiniLM features (product, distance, cosine). Writes a record to benchmarks/results/fit_scorer/."""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from supportagent.data.retrieval import embed
from supportagent.evaluation import fit
from supportagent.inference.checks import _APOLOGY, _CHEER, _sentiment
from supportagent.model import models
from supportagent.paths import pipeline_paths
from supportagent.reporting import records

ROOT = Path(__file__).resolve().parents[1]


def feature_sets(frame: pd.DataFrame, mv: np.ndarray, rv: np.ndarray, mi, ri) -> dict[str, np.ndarray]:
    mood = frame["customer"].map(lambda t: _sentiment().polarity_scores(t)["compound"]).to_numpy()
    cheer = frame["reply"].map(lambda t: float(bool(_CHEER.search(t)))).to_numpy()
    sorry = frame["reply"].map(lambda t: float(bool(_APOLOGY.search(t)))).to_numpy()
    pairs = fit.pair_features(mv[mi], rv[ri])
    cos = pairs[:, -1:]
    return {"cosine": cos,
            "cosine_and_mood": np.c_[cos, (mood[mi] <= -0.3) * cheer[ri], (mood[mi] >= 0.5) * sorry[ri]],
            "minilm_769": pairs}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--negatives", type=int, default=3)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--workdir", default=str(ROOT),
                    help="where the split stage wrote (e.g. build/full of gpu_pipeline.py --stages subset split)")
    args = ap.parse_args()
    work = Path(args.workdir).resolve()
    embedder = models.load_embedder()
    folder = work / pipeline_paths(ROOT / "dvc.yaml")["splits"]
    splits = {s: pd.read_parquet(folder / f"{s}.parquet").reset_index(drop=True) for s in ("train", "val")}
    data = {}
    for name, frame in splits.items():
        mv, rv = embed(embedder, frame["customer"].tolist()), embed(embedder, frame["reply"].tolist())
        mi, ri, y = fit.training_pairs(frame, args.negatives, np.random.default_rng(args.seed))
        data[name] = (feature_sets(frame, mv, rv, mi, ri), y)
    results = {}
    for feats in data["train"][0]:
        for l2 in (1e-4, 1e-3, 1e-2):
            w = fit.fit(data["train"][0][feats], data["train"][1], l2)
            results[f"{feats} l2={l2:g}"] = {f"{s}_auc": round(fit.auc(fit.logits(data[s][0][feats], w), data[s][1]), 4)
                                             for s in ("train", "val")}
    best = max(results, key=lambda k: results[k]["val_auc"])
    record = {
        "machine": records.cpu_facts(),
        "negatives": args.negatives,
        "seed": args.seed,
        "train_pairs": len(splits["train"]),
        "val_pairs": len(splits["val"]),
        "results": results,
        "best": best,
        "notes": "Validation AUC of fit scorers: the real reply against the brand's other replies (and "
        "cheering replies to troubled messages).",
    }
    records.save("fit_scorer", record, label="" if work == ROOT else work.name)
    for k, v in results.items():
        print(f"{k:<28} train AUC {v['train_auc']:.3f}  val AUC {v['val_auc']:.3f}")


if __name__ == "__main__":
    main()
