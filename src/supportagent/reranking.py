"""Choosing one reply among candidates by consensus (minimum Bayes risk decoding, Kumar and Byrne 2004).

With `evaluate.candidates: n` the model writes its greedy reply and `n` sampled ones for each message; the one
sent is the candidate most similar, on average, to the other candidates and to the brand's past replies to the
most similar past messages (`evaluate.rerank_references` of them, from the index of the train split: they stand in
for the reply the customer should get; each weighs `evaluate.rerank_reference_weight` candidates). Similarity is
ROUGE-L F1 weighted `evaluate.rerank_word_weight` plus the cosine of the index's MiniLM embeddings for the rest:
the first rewards shared wording, the second shared meaning. The semantic-similarity metric uses the same MiniLM,
so part of a gain there is the selection seeing the metric's embedder: ROUGE-L is the check that does not. The
weights were chosen on validation splits (benchmarks/full_sweep.json, run 4; benchmarks/reranking.json).
"""
from __future__ import annotations

import numpy as np

from .retrieval import embed


def lcs_f1(a: list[str], b: list[str]) -> float:
    """ROUGE-L F1 of two token lists (their longest common subsequence; symmetric)."""
    if not a or not b:
        return 0.0
    row = [0] * (len(b) + 1)
    for x in a:
        prev = 0  # the diagonal: the row above, one column left
        for j, y in enumerate(b, 1):
            prev, row[j] = row[j], prev + 1 if x == y else max(row[j], row[j - 1])
    lcs = row[-1]
    return 2 * lcs / (len(a) + len(b))


def consensus(candidates: list[list[str]], references: list[list[str]], embedder, *, word_weight: float,
              reference_weight: float) -> list[int]:
    """For each message, the index of the candidate with the highest weighted similarity to the message's other
    candidates (weight 1 each) and its references (`reference_weight` each); similarity: `word_weight` x ROUGE-L F1
    + (1 - `word_weight`) x cosine (ties: the earliest, so the greedy reply when it leads the list)."""
    from rouge_score.tokenizers import DefaultTokenizer

    tokenize = DefaultTokenizer(use_stemmer=True).tokenize  # rouge-score's own, as the ROUGE-L metric uses
    unique = list(dict.fromkeys(t for cands, refs in zip(candidates, references) for t in cands + refs))
    vectors = embed(embedder, unique) if unique else None  # one batch for every message, each text once
    row = {t: i for i, t in enumerate(unique)}
    chosen = []
    for cands, refs in zip(candidates, references):
        pool = cands + refs
        v, tokens = vectors[[row[t] for t in pool]], [tokenize(t) for t in pool]
        words = np.zeros((len(cands), len(pool)))
        for i in range(len(cands)):
            for j in range(i + 1, len(pool)):
                words[i, j] = lcs_f1(tokens[i], tokens[j])
                if j < len(cands):
                    words[j, i] = words[i, j]
        sim = word_weight * words + (1 - word_weight) * (v[: len(cands)] @ v.T)
        sim[np.arange(len(cands)), np.arange(len(cands))] = 0.0  # a candidate does not vote for itself
        votes = np.r_[np.ones(len(cands)), np.full(len(refs), reference_weight)]
        chosen.append(int(np.argmax(sim @ votes)))
    return chosen

