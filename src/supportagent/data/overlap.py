"""Word overlap of two texts as ROUGE-L reads them: the stemmed tokens, their longest common subsequence, and a
reply's repeated word runs. Shared by the metrics (evaluation/metrics.py), the reranker and the output checks, which
sit above this layer."""
from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache


def repetition(text: str) -> float:
    """Share of 3-grams in a reply that repeat an earlier 3-gram of the same reply."""
    words = text.lower().split()
    grams = [tuple(words[i:i + 3]) for i in range(len(words) - 2)]
    return 0.0 if not grams else 1 - len(set(grams)) / len(grams)


def positions(tokens: Sequence[str]) -> dict[str, int]:
    """Each token's positions in `tokens` as the bits of an int (what `lcs_f1` reads a second text by)."""
    bits: dict[str, int] = {}
    for j, t in enumerate(tokens):
        bits[t] = bits.get(t, 0) | 1 << j
    return bits


def lcs_f1(a: Sequence[str], b: Sequence[str], b_positions: dict[str, int] | None = None) -> float:
    """ROUGE-L F1 of two token lists (their longest common subsequence; symmetric). The subsequence's length is
    computed a token of `a` at a time over all of `b` at once, as bits of an int (Hyyrö 2004, "Bit-parallel LCS-length
    computation revisited"): a few integer operations per token of `a` where the textbook table takes len(b).
    `b_positions`: `positions(b)`, when `b` is compared with many texts."""
    if not a or not b:
        return 0.0
    bits = b_positions if b_positions is not None else positions(b)
    full = (1 << len(b)) - 1
    v = full  # a zero bit: a column where the subsequence so far has grown
    for x in a:
        u = v & bits.get(x, 0)
        v = ((v + u) | (v - u)) & full
    lcs = len(b) - v.bit_count()
    return 2 * lcs / (len(a) + len(b))


@lru_cache(maxsize=1)
def _tokenizer():
    from rouge_score.tokenizers import DefaultTokenizer

    return DefaultTokenizer(use_stemmer=True)  # rouge-score's own, as the ROUGE-L metric uses


@lru_cache(maxsize=8192)  # a brand's past replies come back as references of many messages; stemming is the cost
def rouge_tokens(text: str) -> tuple[str, ...]:
    """The stemmed tokens ROUGE-L compares."""
    return tuple(_tokenizer().tokenize(text))
