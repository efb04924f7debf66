"""Can a small learned scorer tell the reply that fits a message from the brand's other replies better than the
MiniLM cosine the reranker and the relevance metric already read?

    python benchmarks/fit_scorer.py
    python benchmarks/fit_scorer.py --workdir build/full   # the full configuration's splits (gpu_pipeline.py)

Trains logistic regressions on the train split (each message's real reply against `--negatives` replies of its
brand to other messages, and, for a message that reports a problem, one cheering reply of its brand) and measures
each on the validation split by AUC (the chance the real reply outscores a negative): the cosine alone; the cosine
with two mood features (a cheering reply to a troubled message, an apology to a pleased one); and the pair's
769 MiniLM features (product, distance, cosine). Writes a record to benchmarks/results/fit_scorer/."""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from supportagent.data.retrieval import embed
from supportagent.inference.checks import _APOLOGY, _CHEER, _sentiment
from supportagent.model import models
from supportagent.paths import pipeline_paths
from supportagent.reporting import records

ROOT = Path(__file__).resolve().parents[1]


def examples(frame: pd.DataFrame, negatives: int, rng: np.random.Generator):
    """(message rows, reply rows, labels): each message with its reply and negatives of its brand."""
    cheer = frame["reply"].map(lambda r: bool(_CHEER.search(r))).to_numpy()
    troubled = frame["customer"].map(lambda m: _sentiment().polarity_scores(m)["compound"] <= -0.3).to_numpy()
    brands, rows = frame["brand"].to_numpy(), np.arange(len(frame))
    m, r, y = [], [], []
    for i in rows:
        same = np.flatnonzero((brands == brands[i]) & (rows != i))
        picks = list(rng.choice(same, size=min(negatives, len(same)), replace=False))
        cheers = np.flatnonzero(cheer & (brands == brands[i]) & (rows != i))
        if troubled[i] and len(cheers):
            picks.append(int(rng.choice(cheers)))
        m, r, y = m + [i] * (1 + len(picks)), r + [i, *picks], y + [1.0] + [0.0] * len(picks)
    return np.array(m), np.array(r), np.array(y, dtype=np.float32)


def auc(scores: np.ndarray, labels: np.ndarray) -> float:
    pos, neg = scores[labels == 1], scores[labels == 0]
    return float((pos[:, None] > neg[None, :]).mean() + 0.5 * (pos[:, None] == neg[None, :]).mean())


def feature_sets(frame: pd.DataFrame, mv: np.ndarray, rv: np.ndarray, mi, ri) -> dict[str, np.ndarray]:
    mood = frame["customer"].map(lambda t: _sentiment().polarity_scores(t)["compound"]).to_numpy()
    cheer = frame["reply"].map(lambda t: float(bool(_CHEER.search(t)))).to_numpy()
    sorry = frame["reply"].map(lambda t: float(bool(_APOLOGY.search(t)))).to_numpy()
    cos = (mv[mi] * rv[ri]).sum(1, keepdims=True)
    return {"cosine": cos,
            "cosine_and_mood": np.c_[cos, (mood[mi] <= -0.3) * cheer[ri], (mood[mi] >= 0.5) * sorry[ri]],
            "minilm_769": np.c_[mv[mi] * rv[ri], np.abs(mv[mi] - rv[ri]), cos]}


def fit(x: np.ndarray, y: np.ndarray, l2: float) -> np.ndarray:
    """Logistic regression (L-BFGS, L2 on the weights, positives weighed as much as negatives): weights, then bias."""
    xt, yt = torch.from_numpy(np.c_[x, np.ones(len(x))].astype(np.float32)), torch.from_numpy(y)
    w = torch.zeros(xt.shape[1], requires_grad=True)
    opt = torch.optim.LBFGS([w], max_iter=300, line_search_fn="strong_wolfe")
    pos_weight = (yt == 0).sum() / (yt == 1).sum()

    def loss():
        opt.zero_grad()
        out = torch.nn.functional.binary_cross_entropy_with_logits(xt @ w, yt, pos_weight=pos_weight)
        out = out + l2 * w[:-1].pow(2).sum()
        out.backward()
        return out

    opt.step(loss)
    return w.detach().numpy()


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
        mi, ri, y = examples(frame, args.negatives, np.random.default_rng(args.seed))
        data[name] = (feature_sets(frame, mv, rv, mi, ri), y)
    results = {}
    for feats in data["train"][0]:
        for l2 in (1e-4, 1e-3, 1e-2):
            w = fit(data["train"][0][feats], data["train"][1], l2)
            score = lambda s: np.c_[data[s][0][feats], np.ones(len(data[s][1]))] @ w  # noqa: E731
            results[f"{feats} l2={l2:g}"] = {"train_auc": round(auc(score("train"), data["train"][1]), 4),
                                             "val_auc": round(auc(score("val"), data["val"][1]), 4)}
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
