"""Whether the brand's past replies belong in the reranker's pool (`evaluate.rerank_past_replies`): the agent's
candidates alone against its candidates and the 16 retrieved past replies ranked together (reranking.pool_rankings),
so a past reply is sent when it fits better.

    python benchmarks/reply_pool.py [--split val] [--system qlora]
    python benchmarks/reply_pool.py --workdir build/full --split test   # after benchmarks/gpu_pipeline.py --workdir

Evaluates the system once on the split (evaluation.evaluate_system, the workspace's adapters, index and params;
its replies are kept under benchmarks/tmp/ so a re-run reuses them), then ranks each message's pool both ways
and sends through the guard (guard.py) as `reply` does. Retrieval on the same split is the yardstick. The reranker
scores agreement with the metrics' own measures (ROUGE-L and MiniLM cosine, among the pool, never with the reference),
so a choice can lean on either metric. With `--word-weights` the pool is also ranked with other ROUGE-L shares of that
similarity (`evaluate.rerank_word_weight`): at 1 it ranks without MiniLM, so its semantic similarity is measured with
an embedder the selector never used; at 0 it ranks by MiniLM alone, so its ROUGE-L is the independent one. With
`--relevance` the pool is also ranked with fit to the message: (1 - w) x the consensus score (normalised by the
votes' weight) + w x the MiniLM cosine of each member with the customer's message, for each w given; with
`--learned-fit`, with a fit scorer learned on the workspace's train split (evaluation/fit.py) in place of the cosine,
both terms as z-scores within the pool; with `--past-bonus`, with a head start for the past replies
(`evaluate.rerank_past_reply_bonus`); with `--likelihood`, with each member's mean token log-probability under the
system's own model after the message's prompt (teacher-forced: the prompt read once, its cache shared by the members),
which tells how well a past reply fits this message as the model reads it; each w given weighs it against the pool
score, both as z-scores, the likelihood within the model's candidates and within the past replies apart (a person's
reply reads less likely to the model than its own); the record gives the scoring's seconds per message. Writes a record
to benchmarks/results/reply_pool/: per variant ROUGE-L, semantic similarity, their paired difference to retrieval
with 95% intervals, send_ready, and the share of replies that are past replies."""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

from supportagent.config import load_params
from supportagent.data.retrieval import ExampleIndex, embed
from supportagent.data.rules import apply_rules
from supportagent.evaluation.evaluate import evaluate_system, test_sample
from supportagent.evaluation.fit import FitScorer
from supportagent.evaluation.intervals import mean_interval
from supportagent.evaluation.metrics import cosine, rouge_l
from supportagent.inference.agent import SupportAgent, prepare
from supportagent.inference.guard import guard, own_brand
from supportagent.inference.reranking import pool_scores, rank, rank_pool, rankings, similarities
from supportagent.model import models
from supportagent.paths import pipeline_paths
from supportagent.reporting import records

ROOT = Path(__file__).resolve().parents[1]


def evaluated(system: str, split: str, params, paths, train: pd.DataFrame, frame: pd.DataFrame, tag: str = "") \
        -> pd.DataFrame:
    cache = ROOT / f"benchmarks/tmp/reply_pool_{tag}{system}_{split}_{records.commit()}.parquet"
    if cache.exists():
        return pd.read_parquet(cache)
    adapter = None if system == "retrieval" else str(paths["adapters"] / system)
    alone = params.model_copy(update={"evaluate": params.evaluate.model_copy(update={"rerank_past_replies": False})})
    _, rows = evaluate_system(system, alone, frame, train, str(paths["base"]), str(paths["index"]), adapter)
    cache.parent.mkdir(parents=True, exist_ok=True)
    rows.to_parquet(cache, index=False)
    return rows


def scores(sent: list[str], refs: list[str], embedder, base: pd.DataFrame) -> dict:
    """Mean ROUGE-L and semantic similarity of `sent`, and their paired differences to `base`'s per-message ones."""
    rl, sim = np.array(rouge_l(sent, refs)), cosine(embedder, sent, refs)
    return {"rouge_l": round(float(rl.mean()), 2), "semantic_similarity": round(float(sim.mean()), 2),
            "rouge_l_vs_retrieval": mean_interval(rl - base["rouge_l"].to_numpy(), 2),
            "semantic_vs_retrieval": mean_interval(sim - base["semantic_similarity"].to_numpy(), 2)}


def weighted_rankings(sims: list, cands: list[list[str]], pools: list[list[str]], messages: list[str],
                      word_weights: list[float], fit_weights: list[float], embedder, *, word_weight: float,
                      reference_weight: float, learned_weights: list[float] = (), scorer: FitScorer | None = None,
                      past_bonuses: list[float] = ()) -> dict[str, list[list[int]]]:
    """Each message's pool (candidates, then past replies; `sims`: their reranking.similarities, computed once)
    best first, as pool_rankings ranks it, for each ROUGE-L share in `word_weights`; for each w in `fit_weights`,
    by (1 - w) x its mean agreement (reranking.pool_scores) + w x the MiniLM cosine of
    each member with the message; and for each w in `learned_weights`, by (1 - w) x the agreement + w x `scorer`'s
    fit of each member to the message, both as z-scores within the pool (the fit is a logit, on no fixed scale);
    for each b in `past_bonuses`, by the mean agreement plus b for a past reply (reranking.pool_rankings)."""
    out = {f"word_weight_{w}": [rank(s, word_weight=w, reference_weight=reference_weight, voters=len(c))
                                for s, c in zip(sims, cands)] for w in word_weights}
    out |= {f"past_bonus_{b}": [rank_pool(s, len(c), word_weight=word_weight, reference_weight=reference_weight,
                                          past_bonus=b) for s, c in zip(sims, cands)] for b in past_bonuses}
    if not fit_weights and not learned_weights:  # neither needs the embeddings below
        return out
    unique = list(dict.fromkeys(t for pool in pools for t in pool))  # each text embedded once, in one batch
    row = {t: i for i, t in enumerate(unique)}
    embedded = embed(embedder, unique)
    base, cosine, learned = [], [], []
    for s, c, pool, m in zip(sims, cands, pools, embed(embedder, messages)):
        base.append(pool_scores(s, len(c), word_weight=word_weight, reference_weight=reference_weight))
        vectors = embedded[[row[t] for t in pool]]
        cosine.append(vectors @ m)
        learned.append(scorer.scores(m, vectors) if scorer else None)

    def order(score) -> list[int]:
        return [int(i) for i in np.argsort(-score, kind="stable")]

    def z(x: np.ndarray) -> np.ndarray:
        return (x - x.mean()) / (x.std() or 1.0)

    return out | {f"relevance_{w}": [order((1 - w) * b + w * f) for b, f in zip(base, cosine)] for w in fit_weights} \
        | {f"learned_fit_{w}": [order((1 - w) * z(b) + w * z(f)) for b, f in zip(base, learned)]
           for w in learned_weights}


def likelihood_rankings(sims: list, cands: list[list[str]], lps: list[np.ndarray], weights: list[float], *,
                        word_weight: float, reference_weight: float, past_bonus: float) -> dict[str, list[list[int]]]:
    """Each pool best first as the agent ranks it with `evaluate.rerank_likelihood_weight` (reranking.rank_pool with
    the members' likelihoods, `lps`), for each weight in `weights`."""
    return {f"likelihood_{w}": [rank_pool(s, len(c), word_weight=word_weight, reference_weight=reference_weight,
                                          past_bonus=past_bonus, likelihood=lp, likelihood_weight=w)
                                for s, c, lp in zip(sims, cands, lps)] for w in weights}


def floats(text: str) -> list[float]:
    return [float(w) for w in filter(None, text.split(","))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--split", default="val", choices=["val", "test"])
    ap.add_argument("--system", default="qlora", choices=["qlora", "prompt_tuning"])
    ap.add_argument("--relevance", default="", help="comma-separated weights of fit to the message, e.g. 0.1,0.3")
    ap.add_argument("--workdir", default=str(ROOT),
                    help="where the stages ran (e.g. build/full of gpu_pipeline.py): its params.yaml and outputs")
    ap.add_argument("--commit", help="the commit the tree is at, where its git history does not tell (a copied tree)")
    ap.add_argument("--word-weights", default="", help="comma-separated ROUGE-L shares of the similarity, e.g. 1,0")
    ap.add_argument("--past-bonus", default="", help="comma-separated head starts of a past reply over the model's "
                    "own (evaluate.rerank_past_reply_bonus), e.g. 0.01,0.02")
    ap.add_argument("--learned-fit", default="", help="comma-separated weights of a fit scorer learned on the train "
                    "split (evaluation/fit.py), e.g. 0.1,0.2")
    ap.add_argument("--likelihood", default="", help="comma-separated weights of each member's likelihood under the "
                    "system's model after the prompt, e.g. 0.2,0.3")
    args = ap.parse_args()
    work = Path(args.workdir).resolve()
    tag = "" if work == ROOT else f"{work.name}_"  # names the cached replies and the record of another workdir
    params = load_params(work / "params.yaml")
    ev = params.evaluate
    paths = {k: work / v for k, v in pipeline_paths(ROOT / "dvc.yaml").items()}
    train = pd.read_parquet(paths["splits"] / "train.parquet")
    frame = test_sample(pd.read_parquet(paths["splits"] / f"{args.split}.parquet"), ev.test_size, params.seed)
    start = time.perf_counter()
    agent = evaluated(args.system, args.split, params, paths, train, frame, tag)
    retrieval = evaluated("retrieval", args.split, params, paths, train, frame, tag)
    embedder = models.load_embedder()
    index = ExampleIndex(str(paths["index"]), train, models.embedder_id())
    examples, refs = index.examples_and_references(embedder, frame["customer"].tolist(), frame["brand"].tolist(),
                                                   params.retrieval, ev.rerank_references)
    past = own_brand(refs, examples)
    refs = frame["reply"].tolist()

    # the pool: the agent's candidates (greedy and sampled, in any order: ranking starts afresh) and the past replies
    cands = [list(c) for c in agent["candidates"]]
    weights = {"word_weight": ev.rerank_word_weight, "reference_weight": ev.rerank_reference_weight}
    variants = {}
    pools = [c + list(p) for c, p in zip(cands, past)]
    sims = similarities(pools, [[] for _ in pools], embedder)  # every pool variant ranks from these
    scorer = FitScorer.train(train, embedder, seed=params.seed) if args.learned_fit else None
    others = weighted_rankings(sims, cands, pools, frame["customer"].tolist(), floats(args.word_weights),
                               floats(args.relevance), embedder, **weights, learned_weights=floats(args.learned_fit),
                               scorer=scorer, past_bonuses=floats(args.past_bonus))
    seconds_per_message = None
    if args.likelihood:
        agent = SupportAgent(params, str(paths["base"]), str(paths["index"]), args.system,
                             str(paths["adapters"] / args.system))
        start_scoring = time.perf_counter()
        lps = [agent.generator.likelihoods(
            prepare(params, agent.tokenizer, row.brand, row.customer, row.context or "", ex)[0], pool)
            for row, ex, pool in zip(frame.itertuples(), examples, pools)]
        seconds_per_message = round((time.perf_counter() - start_scoring) / len(frame), 3)
        others |= likelihood_rankings(sims, cands, lps, floats(args.likelihood), **weights,
                                      past_bonus=ev.rerank_past_reply_bonus)
    orders = [("candidates", rankings(cands, past, embedder, **weights)),
              ("candidates_and_past_replies", [rank(s, **weights, voters=len(c)) for s, c in zip(sims, cands)]),
              *((f"candidates_and_past_replies_{name}", order) for name, order in others.items())]
    for name, ranked_pools in orders:
        sent, kinds, ready = [], [], []
        for row, c, p, order in zip(frame.itertuples(), cands, past, ranked_pools):
            ranked = [((c + list(p))[i], False) for i in order]
            rules = apply_rules(row.customer, params.rules, row.context)
            g = guard(ranked, p, row.brand, row.customer, row.context, rules, params)
            sent.append(g.text)
            ready.append(not g.flags)
            past_sent = g.path in ("past_reply", "fallback_retrieval")
            kinds.append("past_reply" if past_sent else ("template" if g.path == "fallback_template" else "model"))
        variants[name] = scores(sent, refs, embedder, retrieval) | {
            "send_ready": round(100 * float(np.mean(ready)), 2),
            "past_reply_share": round(100 * kinds.count("past_reply") / len(kinds), 2),
            "template_share": round(100 * kinds.count("template") / len(kinds), 2)}
        print(name, json.dumps(variants[name]), flush=True)
    variants["retrieval"] = {"rouge_l": round(float(retrieval["rouge_l"].mean()), 2),
                             "semantic_similarity": round(float(retrieval["semantic_similarity"].mean()), 2),
                             "send_ready": round(100 * float(np.mean([len(f) == 0 for f in retrieval["flags"]])), 2)}
    notes = "past replies in the reranker's pool" + (", and fit to the message" if args.relevance else "") + \
        (", and a fit scorer learned on the train split" if args.learned_fit else "") + \
        (", and other ROUGE-L shares of the similarity" if args.word_weights else "") + \
        (", and a head start for past replies" if args.past_bonus else "") + \
        (", and each member's likelihood under the model after the prompt" if args.likelihood else "")
    record = {"notes": notes, "machine": records.machine_facts(), "split": args.split,
              "system": args.system, "n": len(frame), "seconds": round(time.perf_counter() - start, 1),
              "variants": variants, **({"commit": args.commit} if args.commit else {}),
              **({"likelihood_seconds_per_message": seconds_per_message} if seconds_per_message is not None else {})}
    records.save("reply_pool", record, label=f"{tag.replace('_', '-')}{args.split}-{args.system}")


if __name__ == "__main__":
    main()
