"""Fit of a reply to the message it answers, learned from the train split: each message's real reply against
replies of its brand to other messages (and, for a message that reports a problem, one cheering reply of its
brand), told apart by a logistic regression on the MiniLM embeddings of message and reply. For the benchmarks
that ask whether such a scorer should rank the candidates (benchmarks/fit_scorer.py, benchmarks/reply_pool.py
--learned-fit); the agent's reranker has no fit term."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from supportagent.data.retrieval import embed
from supportagent.inference.checks import _CHEER, _sentiment


def training_pairs(frame: pd.DataFrame, negatives: int, rng: np.random.Generator):
    """(message rows, reply rows, labels) of `frame`: each message with its own reply (1) and `negatives` replies of
    its brand to other messages (0), plus a cheering reply of its brand where the message is troubled (0)."""
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


def pair_features(messages: np.ndarray, replies: np.ndarray) -> np.ndarray:
    """Per (message, reply) row of unit vectors: their product, their distance and their cosine."""
    cos = (messages * replies).sum(1, keepdims=True)
    return np.c_[messages * replies, np.abs(messages - replies), cos]


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


def logits(x: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """The regression's logit of each row of `x` (`weights` as `fit` returns them: weights, then bias)."""
    return np.c_[x, np.ones(len(x))] @ weights


def auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """The chance that a positive outscores a negative (ties count half)."""
    pos, neg = scores[labels == 1], scores[labels == 0]
    return float((pos[:, None] > neg[None, :]).mean() + 0.5 * (pos[:, None] == neg[None, :]).mean())


@dataclass
class FitScorer:
    """The logistic regression on `pair_features`, trained on a train split."""
    weights: np.ndarray

    @classmethod
    def train(cls, frame: pd.DataFrame, embedder, negatives: int = 3, l2: float = 1e-3, seed: int = 42) -> FitScorer:
        mv, rv = embed(embedder, frame["customer"].tolist()), embed(embedder, frame["reply"].tolist())
        mi, ri, y = training_pairs(frame.reset_index(drop=True), negatives, np.random.default_rng(seed))
        return cls(fit(pair_features(mv[mi], rv[ri]), y, l2))

    def scores(self, message: np.ndarray, replies: np.ndarray) -> np.ndarray:
        """The fit (a logit) of each reply vector in `replies` to the one `message` vector."""
        return logits(pair_features(np.broadcast_to(message, replies.shape), replies), self.weights)
