"""Choosing one reply among candidates by consensus (minimum Bayes risk decoding, Kumar and Byrne 2004).

With `evaluate.candidates: n` the model writes its greedy reply and `n` sampled ones for each message; the one
sent is the candidate most similar, on average, to the other candidates and to the brand's past replies to the
most similar past messages (`evaluate.rerank_references` of them, from the index of the train split: they stand in
for the reply the customer should get; each weighs `evaluate.rerank_reference_weight` candidates). Similarity is
ROUGE-L F1 weighted `evaluate.rerank_word_weight` plus the cosine of the index's MiniLM embeddings for the rest:
the first rewards shared wording, the second shared meaning. The semantic-similarity metric uses the same MiniLM,
so part of a gain there is the selection seeing the metric's embedder: ROUGE-L is the check that does not. The
weights were chosen on validation splits (benchmarks/results/full_sweep/, benchmarks/results/reranking/). A
candidate without a word (an empty reply) is never sent while another candidate has one.

With `evaluate.rerank_past_replies` the brand's past replies join the pool (`pool_rankings`): each is scored like a
candidate, by its similarity to the model's candidates and to the other past replies, so a reply a person wrote is
sent where it agrees best with what the model would say and with what the brand said to similar messages. With
`evaluate.rerank_past_reply_bonus` a past reply also gets a head start over the model's own: a small base writes
replies the consensus ranks high and a reader finds odd ("We appreciate you coming on to us!"), which a person's
reply of the same meaning does not (benchmarks/results/reply_pool/). With `evaluate.rerank_likelihood_weight` the pool
is also ranked by how likely the served model finds each member after the message's prompt (likelihood.py,
`with_likelihood`): a judge of fit the similarities lack, for one more read of the past replies (the candidates'
log-probabilities come with their sampling).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..data.retrieval import embed
from ..data.overlap import lcs_f1, positions, rouge_tokens


@dataclass
class Similarities:
    """One message's candidates (n) against its pool (the n candidates, then its references): ROUGE-L F1 and
    MiniLM cosine, each n x pool, a candidate's own column 0; `has_words`: the candidates with a word in them."""
    words: np.ndarray
    cosine: np.ndarray
    has_words: np.ndarray


def similarities(candidates: list[list[str]], references: list[list[str]], embedder) -> list[Similarities]:
    """Each message's `Similarities` (the texts of all messages embedded in one batch, each text once)."""
    unique = list(dict.fromkeys(t for cands, refs in zip(candidates, references) for t in cands + refs))
    vectors = embed(embedder, unique) if unique else None
    row = {t: i for i, t in enumerate(unique)}
    out = []
    for cands, refs in zip(candidates, references):
        pool, n = cands + refs, len(cands)
        v, tokens = vectors[[row[t] for t in pool]], [rouge_tokens(t) for t in pool]
        bits = [positions(t) for t in tokens]
        words = np.zeros((n, len(pool)))
        for i in range(n):
            for j in range(i + 1, len(pool)):
                words[i, j] = lcs_f1(tokens[i], tokens[j], bits[j])
                if j < n:
                    words[j, i] = words[i, j]
        cos = v[:n] @ v.T
        cos[np.arange(n), np.arange(n)] = 0.0  # a candidate does not vote for itself
        out.append(Similarities(words, cos, np.array([bool(t) for t in tokens[:n]])))
    return out


def agreement(s: Similarities, *, word_weight: float, reference_weight: float, references: int | None = None,
              voters: int | None = None) -> np.ndarray:
    """Each candidate's weighted similarity to the other candidates (weight 1 each) and the first `references`
    references (all by default, and all where there are fewer; `reference_weight` each); similarity: `word_weight`
    x ROUGE-L F1 + (1 - `word_weight`) x cosine. Candidates without a word (empty, or punctuation alone) score -inf
    while another has one. `voters`: how many of the rows are the model's candidates, the rows after them being
    references ranked too (`pool_rankings`); all of them by default."""
    n = len(s.has_words)
    voters = n if voters is None else voters
    cols = s.words.shape[1] if references is None else min(s.words.shape[1], n + references)
    sim = word_weight * s.words[:, :cols] + (1 - word_weight) * s.cosine[:, :cols]
    score = sim @ np.r_[np.ones(voters), np.full(cols - voters, reference_weight)]
    if s.has_words.any():
        score[~s.has_words] = -np.inf
    return score


def rank(s: Similarities, *, word_weight: float, reference_weight: float, references: int | None = None,
         voters: int | None = None, likelihood: np.ndarray | None = None, likelihood_weight: float = 0.0
         ) -> list[int]:
    """The candidates best first by their `agreement`, mixed with their `likelihood` where one is given
    (`with_likelihood`). Ties: the earlier first, so the greedy reply when it leads the list."""
    score = agreement(s, word_weight=word_weight, reference_weight=reference_weight, references=references,
                      voters=voters)
    if likelihood is not None and likelihood_weight:
        score = with_likelihood(score, likelihood, len(score), likelihood_weight)
    return [int(i) for i in np.argsort(-score, kind="stable")]


def choose(s: Similarities, *, word_weight: float, reference_weight: float, references: int | None = None) -> int:
    """The candidate `rank` puts first."""
    return rank(s, word_weight=word_weight, reference_weight=reference_weight, references=references)[0]


def rankings(candidates: list[list[str]], references: list[list[str]], embedder, *, word_weight: float,
             reference_weight: float, likelihoods: list[np.ndarray] | None = None, likelihood_weight: float = 0.0
             ) -> list[list[int]]:
    """For each message, its candidates' indices best first (`rank`), given its references: the guard (guard.py)
    sends the first that passes the output checks. With `likelihoods` (each message's, its candidates' first) and a
    `likelihood_weight`, how likely the model finds each candidate after the prompt weighs in (`with_likelihood`)."""
    likelihoods = likelihoods if likelihoods is not None else [None] * len(candidates)
    return [rank(s, word_weight=word_weight, reference_weight=reference_weight, likelihood_weight=likelihood_weight,
                 likelihood=None if lp is None else np.asarray(lp)[:len(c)])
            for s, c, lp in zip(similarities(candidates, references, embedder), candidates, likelihoods)]


def consensus(candidates: list[list[str]], references: list[list[str]], embedder, *, word_weight: float,
              reference_weight: float) -> list[int]:
    """For each message, the index of its best-ranked candidate."""
    return [r[0] for r in rankings(candidates, references, embedder, word_weight=word_weight,
                                   reference_weight=reference_weight)]


def pool_scores(s: Similarities, candidates: int, *, word_weight: float, reference_weight: float,
                past_bonus: float = 0.0) -> np.ndarray:
    """Each member's score in a pool of `candidates` model candidates followed by past replies (`s`: the pool
    against itself): its `agreement` over the votes' total weight (a similarity, 0 to 1), plus `past_bonus` for a
    past reply."""
    votes = candidates + (len(s.has_words) - candidates) * reference_weight
    score = agreement(s, word_weight=word_weight, reference_weight=reference_weight, voters=candidates) / (votes or 1.0)
    score[candidates:] += past_bonus
    return score


def with_likelihood(score: np.ndarray, likelihood: np.ndarray, candidates: int, weight: float) -> np.ndarray:
    """(1 - `weight`) x the pool scores + `weight` x the members' likelihoods (likelihood.py), both as z-scores within
    the pool, the likelihood within the `candidates` model candidates and within the past replies apart: a person's
    reply reads less likely to the model than its own, so each is compared with its own kind. A member the pool
    scores never sends (-inf: no word in it) keeps that score."""
    def z(x: np.ndarray) -> np.ndarray:
        ok = np.isfinite(x)
        return np.where(ok, (x - x[ok].mean()) / (x[ok].std() or 1.0), x) if ok.any() else x

    mixed = (1 - weight) * z(score) + weight * np.concatenate([z(likelihood[:candidates]), z(likelihood[candidates:])])
    return np.where(np.isfinite(score), mixed, score)


def pool_rankings(candidates: list[list[str]], references: list[list[str]], embedder, *, word_weight: float,
                  reference_weight: float, past_bonus: float = 0.0, likelihoods: list[np.ndarray] | None = None,
                  likelihood_weight: float = 0.0) -> list[list[int]]:
    """For each message, the indices of its pool (its candidates, then its references: the brand's past replies)
    best first; an index past the candidates is a past reply. Each member is compared with every other (its own
    entry 0, so a past reply does not vote for itself) and scored as `rank` scores a candidate: the model's
    candidates weigh 1 each, the past replies `reference_weight` each (`pool_scores`). A past reply starts
    `past_bonus` ahead (`evaluate.rerank_past_reply_bonus`): the consensus cannot see whether a reply reads as a
    person's, so a model's own reply is sent only where it agrees better than the best past reply by that margin.
    With `likelihoods` (each pool's, in pool order) and a `likelihood_weight`, how likely the model finds each
    member after the prompt weighs in (`with_likelihood`, `evaluate.rerank_likelihood_weight`)."""
    pools = [list(c) + list(r) for c, r in zip(candidates, references)]
    likelihoods = likelihoods if likelihoods is not None else [None] * len(pools)
    return [rank_pool(s, len(c), word_weight=word_weight, reference_weight=reference_weight, past_bonus=past_bonus,
                      likelihood=lp, likelihood_weight=likelihood_weight)
            for s, c, lp in zip(similarities(pools, [[] for _ in pools], embedder), candidates, likelihoods)]


def rank_pool(s: Similarities, candidates: int, *, word_weight: float, reference_weight: float,
              past_bonus: float = 0.0, likelihood: np.ndarray | None = None, likelihood_weight: float = 0.0
              ) -> list[int]:
    """One pool's members best first by their `pool_scores` (ties: the earlier first), mixed with their `likelihood`
    where one is given (`with_likelihood`)."""
    score = pool_scores(s, candidates, word_weight=word_weight, reference_weight=reference_weight,
                        past_bonus=past_bonus)
    if likelihood is not None and likelihood_weight:
        score = with_likelihood(score, likelihood, candidates, likelihood_weight)
    return [int(i) for i in np.argsort(-score, kind="stable")]
