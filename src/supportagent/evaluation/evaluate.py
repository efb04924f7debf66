"""Evaluate one system (zero_shot, retrieval, qlora, prompt_tuning) on the test split."""
from __future__ import annotations

import time

import numpy as np
import pandas as pd
import torch

from ..config import Params
from ..data.placeholders import serve
from ..data.retrieval import ExampleIndex, RetrievalBaseline
from ..data.rules import apply_rules
from ..inference.agent import prepare
from ..inference.checks import CHECKS
from ..inference.guard import Guarded, check_sent, guard, own_brand
from ..model import bases, models
from .metrics import rouge_l, score


def test_sample(test: pd.DataFrame, size: int, seed: int) -> pd.DataFrame:
    if test.empty:
        raise ValueError("the test split is empty: check metrics/split.json (too few pairs, or split.test too small)")
    if size and size < len(test):
        test = test.sample(n=size, random_state=seed)
    return test.sort_values("pair_id").reset_index(drop=True)


def _llm_replies(system: str, params: Params, test: pd.DataFrame, base_dir: str, adapter_dir: str | None,
                 index: ExampleIndex, embedder):
    from ..inference.generation import load_system
    from ..inference.serving import ready_to_serve

    model, tok = load_system(system, base_dir, adapter_dir)
    footprint = (
        model.get_base_model().get_memory_footprint()
        if hasattr(model, "get_base_model")
        else model.get_memory_footprint()
    )
    sizes = {"adapter_mb": models.folder_mb(adapter_dir) if adapter_dir else 0.0,
             "base_mb": round(footprint / 2**20, 1)}  # as stored and loaded, before the serving fold
    ev = params.evaluate
    gen = ready_to_serve(model, tok, ev, embedder, params.seed, params.model.max_prompt_tokens)
    # the prompts' examples, and the brand's past replies reranked candidates are compared with (evaluate.candidates)
    examples, refs = index.examples_and_references(embedder, test["customer"].tolist(), test["brand"].tolist(),
                                                   params.retrieval, ev.rerank_references)
    past = own_brand(refs, examples)
    prompts = [
        prepare(params, tok, r.brand, r.customer, r.context, ex)[0] for r, ex in zip(test.itertuples(), examples)
    ]
    # the first `latency_samples` replies are generated one at a time and timed; the rest in batches
    k = min(ev.latency_samples, len(prompts))
    single, latency = gen.timed(prompts[:k], references=past[:k])
    batched, per_s = gen.generate_all(prompts[k:], ev.cuda_batch_size if torch.cuda.is_available() else ev.batch_size,
                                      references=past[k:])
    replies = single + batched
    extra = {"examples": [list(e.pair_ids) for e in examples], "examples_source": [e.source for e in examples]}
    return [[(r.text, r.truncated), *r.alternatives] for r in replies], past, per_s, latency, sizes, extra


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
    return [[(r, False)] for r in replies], None, per_s, latency, sizes, {}


def send(system: str, candidates: list[tuple[str, bool]], past: list[str], row, rules, params: Params) -> Guarded:
    """What `system` sends for one test message: an LLM system's replies go through the guard, as `reply` and
    `serve` send them; the retrieval baseline's one past reply is sent as it is (it is the yardstick, not the agent),
    its flags recorded."""
    if system != "retrieval":
        return guard(candidates, past, row.brand, row.customer, row.context, rules, params)
    text = candidates[0][0]
    flags = [str(f) for f in check_sent(text, row.brand, row.customer, row.context, rules, params)]
    return Guarded(text, serve(text, row.brand, params.brands), "unguarded", rules.escalate, flags, [], flags)


def sendability(rows: pd.DataFrame, refs: list[str]) -> dict:
    """Share (0-100) of replies sent with no flag, after the guard (`send_ready`) and of the best-ranked replies
    before it (`send_ready_unguarded`, what an agent without the guard sends); the share of past replies the reranker
    ranked first (`past_reply_share`) and the share sent by each fallback; each
    check's flag rate on the best-ranked replies; ROUGE-L of the best-ranked replies against the references."""
    n = len(rows)
    first = [{f.split(":", 1)[0] for f in flags} for flags in rows["first_flags"]]
    return {
        "send_ready": round(100 * float(np.mean([not f for f in rows["flags"]])), 2),
        "send_ready_unguarded": round(100 * float(np.mean([not f for f in first])), 2),
        "past_reply_share": round(100 * float((rows["path"] == "past_reply").mean()), 2),
        "fallback_retrieval_share": round(100 * float((rows["path"] == "fallback_retrieval").mean()), 2),
        "fallback_template_share": round(100 * float((rows["path"] == "fallback_template").mean()), 2),
        "flag_rate": {c: round(100 * sum(c in f for f in first) / n, 2) for c in CHECKS},
        "rouge_l_unguarded": round(float(np.mean(rouge_l(rows["unguarded"].tolist(), refs))), 2),
    }


def evaluate_system(system: str, params: Params, test: pd.DataFrame, train: pd.DataFrame, base_dir: str,
                    index_dir: str, adapter_dir: str | None = None) -> tuple[dict, pd.DataFrame]:
    """Metrics (0-100) and the per-example predictions of one system. Prompts and the retrieval
    baseline draw on the index of `train` only (an index of other data is refused)."""
    test = test_sample(test, params.evaluate.test_size, params.seed)
    embedder = models.load_embedder()
    index = ExampleIndex(index_dir, train, models.embedder_id())
    torch.manual_seed(params.seed)
    if system == "retrieval":
        candidates, past, per_s, latency, sizes, extra = _retrieval_replies(params, test, index, embedder)
    else:
        candidates, past, per_s, latency, sizes, extra = _llm_replies(system, params, test, base_dir, adapter_dir,
                                                                      index, embedder)
    tags = [apply_rules(c, params.rules, x) for c, x in zip(test["customer"], test["context"])]
    past = past or [[] for _ in candidates]
    sent = [send(system, c, p, r, t, params) for c, p, r, t in zip(candidates, past, test.itertuples(), tags)]
    preds, served = [g.text for g in sent], [g.sent for g in sent]
    truncated = [c[0][1] for c in candidates]  # the best-ranked reply hit the length limit (the guard never sends it)
    refs = test["reply"].tolist()
    corpus, per_example = score(preds, refs, test["customer"].tolist(), embedder, served)
    rows = test[["pair_id", "brand", "context", "customer", "reply"]].rename(columns={"reply": "reference"}).assign(
        prediction=preds, served=served, truncated=truncated, tags=[t.tag_line() for t in tags],
        escalate=[g.escalate for g in sent], rules_escalate=[t.escalate for t in tags], path=[g.path for g in sent],
        flags=[g.flags for g in sent], first_flags=[g.first_flags for g in sent],
        passed_over=[g.passed_over for g in sent], unguarded=[c[0][0] for c in candidates],
        candidates=[[t for t, _ in c] for c in candidates], **extra, **per_example)
    per_brand = {
        b: {"n": len(g), "rouge_l": round(g["rouge_l"].mean(), 2),
            "semantic_similarity": round(g["semantic_similarity"].mean(), 2),
            "escalation_share": round(100 * g["escalate"].mean(), 2)}
        for b, g in rows.groupby("brand")
    }
    manifest, _ = bases.read_manifest(base_dir)
    metrics = {
        "system": system, **corpus, **latency, "replies_per_s": round(per_s, 2) if per_s else None, **sizes,
        **sendability(rows, refs),
        "truncated_share": round(100 * float(np.mean(truncated)), 2),
        "escalation_share": round(100 * float(rows["escalate"].mean()), 2),
        "n": len(rows), "base": manifest["base"], "per_brand": per_brand,
    }
    return metrics, rows
