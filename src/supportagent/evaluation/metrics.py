"""Reply quality metrics on a 0-100 scale, computed offline (sacreBLEU, rouge-score, MiniLM).

`evaluate.load(...)` is not used: it downloads metric code from the Hugging Face Hub at run time."""
from __future__ import annotations

import re
import string

import numpy as np

from ..data.overlap import repetition
from ..data.placeholders import has_mask

# the 0-100 reply-quality scores of `score`, in the order tables and plots show them
QUALITY = ["bleu", "chrf", "rouge_l", "exact_match", "semantic_similarity", "relevance"]
_PUNCT = re.compile("[" + re.escape(string.punctuation + "’‘“”…") + "]")
_HANDLE = re.compile(r"@\w+")
_LINK = re.compile(r"(?:https?://|www\.)\S+|<url>", re.IGNORECASE)


def normalise_for_match(text: str) -> str:
    """Lower-cased, handles and URLs masked, punctuation stripped, whitespace collapsed."""
    text = _LINK.sub(" url ", text.lower())
    text = _HANDLE.sub(" user ", text)
    return " ".join(_PUNCT.sub(" ", text).split())


def exact_match(preds: list[str], refs: list[str]) -> float:
    if not preds:
        return 0.0
    return 100 * float(np.mean([normalise_for_match(p) == normalise_for_match(r) for p, r in zip(preds, refs)]))


def distinct_replies(preds: list[str]) -> float:
    """Share of different replies (0-100), after the exact-match normalisation: templates score low."""
    return 100 * len({normalise_for_match(p) for p in preds}) / len(preds) if preds else 0.0


def distinct_2(preds: list[str]) -> float:
    """Distinct bigrams over all bigrams of all replies (Li et al. 2016), 0-100."""
    grams = [tuple(w[i:i + 2]) for p in preds for w in [p.lower().split()] for i in range(len(w) - 1)]
    return 100 * len(set(grams)) / len(grams) if grams else 0.0


def rouge_l(preds: list[str], refs: list[str]) -> list[float]:
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    return [100 * scorer.score(r, p)["rougeL"].fmeasure for p, r in zip(preds, refs)]


def cosine(embedder, a: list[str], b: list[str]) -> np.ndarray:
    ea = embedder.encode(a, normalize_embeddings=True, batch_size=64, convert_to_numpy=True)
    eb = embedder.encode(b, normalize_embeddings=True, batch_size=64, convert_to_numpy=True)
    return 100 * np.clip((ea * eb).sum(axis=1), -1, 1)


def score(preds: list[str], refs: list[str], customers: list[str], embedder,
          served: list[str] | None = None) -> tuple[dict, dict]:
    """Corpus metrics and the per-example columns they come from. `preds` are the model's replies as
    written (with cleaning masks, like the references); `served` what a customer would receive."""
    import sacrebleu

    if not preds:
        raise ValueError("no predictions to score: the evaluated test split is empty")
    rl = rouge_l(preds, refs)
    sim = cosine(embedder, preds, refs)
    rel = cosine(embedder, preds, customers)
    per_example = {"rouge_l": rl, "semantic_similarity": sim.tolist(), "relevance": rel.tolist()}
    corpus = {
        "bleu": round(sacrebleu.corpus_bleu(preds, [refs]).score, 2),
        "chrf": round(sacrebleu.corpus_chrf(preds, [refs]).score, 2),
        "rouge_l": round(float(np.mean(rl)), 2),
        "exact_match": round(exact_match(preds, refs), 2),
        "semantic_similarity": round(float(np.mean(sim)), 2),
        "relevance": round(float(np.mean(rel)), 2),
        "repetition": round(100 * float(np.mean([repetition(p) for p in preds])), 2),
        "avg_words": round(float(np.mean([len(p.split()) for p in preds])), 2),
        "distinct_replies": round(distinct_replies(preds), 2),
        "distinct_2": round(distinct_2(preds), 2),
        "placeholder_rate": round(
            100 * float(np.mean([has_mask(s) for s in (served if served is not None else preds)])), 2
        ),
    }
    return corpus, per_example
