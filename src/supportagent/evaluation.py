"""Evaluate one system (zero_shot, retrieval, qlora, prompt_tuning) on the test split."""
from __future__ import annotations

import time

import numpy as np
import pandas as pd
import torch

from . import bases, models
from .agent import prepare
from .config import Params
from .metrics import score
from .placeholders import serve
from .retrieval import ExampleIndex, RetrievalBaseline
from .rules import apply_rules


def test_sample(test: pd.DataFrame, size: int, seed: int) -> pd.DataFrame:
    if test.empty:
        raise ValueError("the test split is empty: check metrics/split.json (too few pairs, or split.test too small)")
    if size and size < len(test):
        test = test.sample(n=size, random_state=seed)
    return test.sort_values("pair_id").reset_index(drop=True)


def _llm_replies(system: str, params: Params, test: pd.DataFrame, base_dir: str, adapter_dir: str | None,
                 index: ExampleIndex, embedder):
    from .generation import load_system
    from .serving import ready_to_serve

    model, tok = load_system(system, base_dir, adapter_dir)
    footprint = model.get_base_model().get_memory_footprint() if hasattr(model, "get_base_model") else model.get_memory_footprint()
    sizes = {"adapter_mb": models.folder_mb(adapter_dir) if adapter_dir else 0.0,
             "base_mb": round(footprint / 2**20, 1)}  # as stored and loaded, before the serving fold
    ev = params.evaluate
    gen = ready_to_serve(model, tok, ev, embedder, params.seed, params.model.max_prompt_tokens)
    # the prompts' examples, and the past replies reranked candidates are compared with (evaluate.candidates)
    examples, refs = index.examples_and_references(embedder, test["customer"].tolist(), test["brand"].tolist(),
                                                   params.retrieval, ev.rerank_references)
    prompts = [prepare(params, tok, r.brand, r.customer, r.context, ex)[0] for r, ex in zip(test.itertuples(), examples)]
    # the first `latency_samples` replies are generated one at a time and timed; the rest in batches
    k = min(ev.latency_samples, len(prompts))
    single, latency = gen.timed(prompts[:k], references=refs[:k])
    batched, per_s = gen.generate_all(prompts[k:], ev.cuda_batch_size if torch.cuda.is_available() else ev.batch_size,
                                      references=refs[k:])
    replies = single + batched
    extra = {"examples": [list(e.pair_ids) for e in examples], "examples_source": [e.source for e in examples]}
    return [r.text for r in replies], [r.truncated for r in replies], per_s, latency, sizes, extra


def _retrieval_replies(params: Params, test: pd.DataFrame, index: ExampleIndex, embedder):
    base = RetrievalBaseline(index, embedder)
    start = time.perf_counter()
    replies = base.reply(test["brand"].tolist(), test["customer"].tolist())
    per_s = len(test) / (time.perf_counter() - start)
    times = []
    for r in test.head(params.evaluate.latency_samples).itertuples():
        t = time.perf_counter()
        base.reply([r.brand], [r.customer])
        times.append((time.perf_counter() - t) * 1000)
    latency = {"latency_p50_ms": round(float(np.percentile(times, 50)), 1) if times else None,
               "latency_p95_ms": round(float(np.percentile(times, 95)), 1) if times else None}
    sizes = {"adapter_mb": round(index.vectors.nbytes / 2**20, 3),
             "base_mb": models.folder_mb(bases.package_dir(models.EMBEDDING_PACKAGE) / "model")}
    return replies, [False] * len(replies), per_s, latency, sizes, {}


def evaluate_system(system: str, params: Params, test: pd.DataFrame, train: pd.DataFrame, base_dir: str,
                    index_dir: str, adapter_dir: str | None = None) -> tuple[dict, pd.DataFrame]:
    """Metrics (0-100) and the per-example predictions of one system. Prompts and the retrieval
    baseline draw on the index of `train` only (an index of other data is refused)."""
    test = test_sample(test, params.evaluate.test_size, params.seed)
    embedder = models.load_embedder()
    index = ExampleIndex(index_dir, train, models.embedder_id())
    torch.manual_seed(params.seed)
    if system == "retrieval":
        preds, truncated, per_s, latency, sizes, extra = _retrieval_replies(params, test, index, embedder)
    else:
        preds, truncated, per_s, latency, sizes, extra = _llm_replies(system, params, test, base_dir, adapter_dir, index,
                                                                      embedder)
    served = [serve(p, b, params.brands) for p, b in zip(preds, test["brand"])]
    corpus, per_example = score(preds, test["reply"].tolist(), test["customer"].tolist(), embedder, served)
    tags = [apply_rules(c, params.rules, x) for c, x in zip(test["customer"], test["context"])]
    rows = test[["pair_id", "brand", "context", "customer", "reply"]].rename(columns={"reply": "reference"}).assign(
        prediction=preds, served=served, truncated=truncated, tags=[t.tag_line() for t in tags],
        escalate=[t.escalate for t in tags], **extra, **per_example)
    per_brand = {
        b: {"n": len(g), "rouge_l": round(g["rouge_l"].mean(), 2),
            "semantic_similarity": round(g["semantic_similarity"].mean(), 2),
            "escalation_share": round(100 * g["escalate"].mean(), 2)}
        for b, g in rows.groupby("brand")
    }
    manifest, _ = bases.read_manifest(base_dir)
    metrics = {
        "system": system, **corpus, **latency, "replies_per_s": round(per_s, 2) if per_s else None, **sizes,
        "truncated_share": round(100 * float(np.mean(truncated)), 2),
        "escalation_share": round(100 * float(rows["escalate"].mean()), 2),
        "n": len(rows), "base": manifest["base"], "per_brand": per_brand,
    }
    return metrics, rows
