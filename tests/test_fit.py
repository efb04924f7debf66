"""The learned fit scorer of the benchmarks (evaluation/fit.py): it learns which reply belongs to a message."""
import numpy as np
import pandas as pd

from supportagent.evaluation import fit

TOPICS = ["refund", "password", "delivery", "playlist", "receipt", "battery"]


class TopicEmbedder:
    """A stand-in for MiniLM: a text's unit vector is its topic's direction plus noise, so a reply shares its
    message's direction and not another message's."""

    def __init__(self, seed: int = 0):
        rng = np.random.default_rng(seed)
        self.directions = {t: rng.normal(size=16) for t in TOPICS}
        self.rng = rng

    def encode(self, texts, normalize_embeddings=True, **kwargs):
        v = np.stack([self.directions[t.split()[0]] + 0.8 * self.rng.normal(size=16) for t in texts])
        return v / np.linalg.norm(v, axis=1, keepdims=True)


def frame(n: int) -> pd.DataFrame:
    topics = [TOPICS[i % len(TOPICS)] for i in range(n)]
    return pd.DataFrame({"brand": ["AmazonHelp"] * n, "customer": [f"{t} issue {i}" for i, t in enumerate(topics)],
                         "reply": [f"{t} answer {i}" for i, t in enumerate(topics)]})


def test_training_pairs_hold_each_real_reply_against_other_replies_of_its_brand():
    f = pd.concat([frame(6), frame(4).assign(brand="SpotifyCares")], ignore_index=True)
    m, r, y = fit.training_pairs(f, negatives=3, rng=np.random.default_rng(0))
    assert (y == 1).sum() == len(f) and set(m[y == 1]) == set(range(len(f))) and (m[y == 1] == r[y == 1]).all()
    negatives = y == 0
    assert (m[negatives] != r[negatives]).all()
    assert (f["brand"].to_numpy()[m[negatives]] == f["brand"].to_numpy()[r[negatives]]).all()


def test_the_scorer_ranks_the_reply_of_the_message_first():
    embedder = TopicEmbedder()
    scorer = fit.FitScorer.train(frame(240), embedder, negatives=3)
    message = embedder.encode(["battery drains"])[0]
    replies = embedder.encode(["refund answer", "battery answer", "playlist answer", "receipt answer"])
    assert int(np.argmax(scorer.scores(message, replies))) == 1
    held_out = frame(60)
    mv, rv = embedder.encode(held_out["customer"].tolist()), embedder.encode(held_out["reply"].tolist())
    m, r, y = fit.training_pairs(held_out, negatives=3, rng=np.random.default_rng(1))
    # a negative of the same topic (1 in 6) cannot be told apart: well above chance is all there is to ask
    assert fit.auc(np.array([scorer.scores(mv[i], rv[j:j + 1])[0] for i, j in zip(m, r)]), y) > 0.8


def test_auc_counts_ties_as_half():
    assert fit.auc(np.array([1.0, 0.0]), np.array([1.0, 0.0])) == 1.0
    assert fit.auc(np.array([0.5, 0.5]), np.array([1.0, 0.0])) == 0.5
