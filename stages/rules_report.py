"""DVC stage `rules`: what the rule layer says about the pairs, per brand, and how well it escalates the labelled
messages of data/labels/escalation.jsonl (params: rules)."""
import json

import pandas as pd
from _common import arguments, params, run, write_json

from supportagent.data.rules import apply_rules, escalation_scores


def main() -> None:
    a = arguments(__doc__, "pairs", "labels", "metrics")
    p = params()
    pairs = pd.read_parquet(a.pairs)
    res = pd.DataFrame([apply_rules(c, p.rules, x).to_dict() for c, x in zip(pairs["customer"], pairs["context"])])
    res["brand"] = pairs["brand"].to_numpy()

    def shares(col: pd.Series) -> dict:
        return {k: round(100 * v, 2) for k, v in col.value_counts(normalize=True).sort_index().items()}

    labelled = [json.loads(line) for line in a.labels.read_text().splitlines() if line.strip()]
    safety = escalation_scores(labelled, [apply_rules(x["text"], p.rules).escalate for x in labelled])
    write_json(a.metrics, {
        "pairs": len(res),
        "intent_share": shares(res["intent"]),
        "band_share": shares(res["band"]),
        "escalation_share": round(100 * res["escalate"].mean(), 2),
        "per_brand": {b: {"escalation_share": round(100 * g["escalate"].mean(), 2), "band_share": shares(g["band"]),
                          "intent_share": shares(g["intent"])} for b, g in res.groupby("brand")},
        "safety": safety,
    })
    print(f"escalation share {100 * res['escalate'].mean():.1f}%, intents {shares(res['intent'])}")
    print(f"labelled messages: escalation recall {safety['recall']:.1f}%, "
          f"false escalations {safety['false_escalation_rate']:.1f}% of {safety['negatives']}")


if __name__ == "__main__":
    run(main)
