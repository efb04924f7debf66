"""The `compare` stage's outputs: decision metrics per system, the served method's metrics, review samples."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from ..config import METHODS, SYSTEMS
from ..errors import DataError
from .intervals import mean_interval

TEMPLATES = ["distinct_replies", "distinct_2", "placeholder_rate"]  # templates and masks that overlap metrics reward
# replies a desk would send (evaluation.sendability): what is sent with no flag, and how much of it fallbacks are
NOT_OWN = ["past_reply_share", "fallback_retrieval_share", "fallback_template_share"]  # replies the model did not write
SENDABILITY = ["send_ready", "send_ready_unguarded", *NOT_OWN]
# what decides between the methods: sendability first, then overlap, templates, cost
DECISION = [*SENDABILITY, "rouge_l", "bleu", "exact_match", "semantic_similarity", *TEMPLATES, "latency_p50_ms",
            "adapter_mb"]
LEAD = ["rouge_l", "semantic_similarity"]  # the per-message scores a system's lead over retrieval is measured on


def load_json(path: str | Path) -> dict:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: run `dvc repro` first")
    return json.loads(path.read_text())


def load_all(metrics_dir: str | Path) -> tuple[dict, dict]:
    """Evaluation and training metrics of every system and method: `<metrics_dir>/eval/<system>.json` and
    `<metrics_dir>/train/<method>.json` (`metrics/full` holds those of the full configuration)."""
    root = Path(metrics_dir)
    evals = {s: load_json(root / f"eval/{s}.json") for s in SYSTEMS}
    trains = {m: load_json(root / f"train/{m}.json") for m in METHODS}
    return evals, trains


def lead_over_retrieval(predictions: dict[str, pd.DataFrame], systems: list[str] | None = None) -> dict:
    """Each LLM system's (or each of `systems`') lead over the retrieval baseline on the same test messages: the mean
    of the per-message differences of ROUGE-L and of semantic similarity, with its 95% interval (paired t). An
    interval above 0 is a lead the test split shows beyond the luck of which messages it holds; one that spans 0
    is not."""
    base = predictions["retrieval"].set_index("pair_id")
    out = {}
    for s in systems or [s for s in SYSTEMS if s != "retrieval"]:
        rows = predictions[s].set_index("pair_id")
        if set(rows.index) != set(base.index):
            raise DataError(f"{s} and retrieval were scored on different test messages ({len(rows)} and "
                             f"{len(base)}): rerun `dvc repro` so every evaluate stage reads the same test split")
        rows = rows.loc[base.index]
        out[s] = {k: mean_interval(rows[k].to_numpy() - base[k].to_numpy(), digits=2) for k in LEAD}
    return out


def real_replies(predictions: pd.DataFrame, params) -> dict:
    """The output checks on the brands' real replies to the test messages (the `reference` of any system's
    predictions): the ceiling of `send_ready`, and each check's flag rate there."""
    from ..inference.guard import raised, rates

    p = predictions
    return rates(raised(p["reference"].tolist(), p["brand"].tolist(), p["customer"].tolist(),
                        p["context"].fillna("").tolist(), params))


def ship(evals: dict) -> str:
    """The method to ship: the most replies sent with no flag, then the most of its own replies among them (fewest
    past replies and fallbacks), then ROUGE-L. A method with more overlap but fewer sendable replies is not the one."""
    own = lambda e: -sum(e.get(k, 0) for k in NOT_OWN)  # noqa: E731
    return max(METHODS, key=lambda m: (evals[m].get("send_ready", 0), own(evals[m]), evals[m]["rouge_l"]))


def comparison(evals: dict, trains: dict, served: str, retrieval: dict, predictions: dict[str, pd.DataFrame],
               real: dict | None = None) -> dict:
    """The decision metrics per system, one top-level key each (short `dvc exp show` columns such as
    `retrieval.rouge_l`); the detail files under metrics/eval and metrics/train hold the rest. `retrieval`: the
    params.retrieval the LLM systems were prompted with (k=0: no examples), recorded as `examples`; `predictions`:
    each system's scored rows, for the lead over retrieval with its interval (`lead_over_retrieval`); `real`: the
    checks on the real replies (`real_replies`)."""
    zero = evals["zero_shot"]["rouge_l"]
    return {
        "served_method": served,
        "method_to_ship": ship(evals),
        "examples": retrieval,
        "best_rouge_l": max(SYSTEMS, key=lambda s: evals[s]["rouge_l"]),
        **{s: {**{k: evals[s].get(k) for k in DECISION},
               **({"train_seconds": trains[s]["train_seconds"]} if s in trains else {})} for s in SYSTEMS},
        "rouge_l_gain_over_zero_shot": {m: round(evals[m]["rouge_l"] - zero, 2) for m in METHODS},
        "rouge_l_gap_to_retrieval": {m: round(evals[m]["rouge_l"] - evals["retrieval"]["rouge_l"], 2) for m in METHODS},
        "lead_over_retrieval": lead_over_retrieval(predictions),
        **({"real_replies": real} if real is not None else {}),
    }


def served_metrics(evals: dict, trains: dict, served: str) -> dict:
    """metrics/served.json: the served method's decision metrics, the file `dvc metrics diff` shows first."""
    e = evals[served]
    return {"method": served, **{k: e.get(k) for k in DECISION}, "latency_p95_ms": e["latency_p95_ms"],
            "train_seconds": trains[served]["train_seconds"], "n": e["n"], "base": e["base"]}
