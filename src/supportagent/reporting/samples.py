"""reports/samples.md: a fixed random draw of test messages with every system's reply, to read before rating."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..config import SYSTEMS
from ..evaluation.review import sample_ids
from .markdown import cell


def write_samples(predictions: dict[str, pd.DataFrame], n: int, seed: int, path: Path) -> None:
    """A fixed random draw of test messages with every system's reply, for manual review."""
    ref = predictions["zero_shot"]
    ids = sample_ids(ref, n, seed)
    by_system = {s: df.set_index("pair_id") for s, df in predictions.items()}
    lines = ["# Replies for manual review", "",
             f"{len(ids)} test messages drawn at random (seed {seed}), with every system's reply as a customer would "
             "receive it (links filled in; the reference keeps its masks). To rate them blind, run "
             "`python -m supportagent serve` and open http://127.0.0.1:8000/review: ratings go to "
             "reports/review/ratings.csv and the `review` stage summarises them. Data: TWCS, CC BY-NC-SA 4.0.", ""]
    for k, pid in enumerate(ids, 1):
        row = by_system["zero_shot"].loc[pid]
        lines += [f"## {k}. {row['brand']} (pair {pid})", "", f"`{row['tags']}`", ""]
        if row["context"]:
            lines += [f"> previous turn: {row['context']}", ""]
        lines += [f"> **customer:** {row['customer']}", "", "| system | reply |", "|---|---|",
                  f"| reference | {cell(row['reference'])} |"]
        for s in SYSTEMS:
            r = by_system[s].loc[pid]
            lines.append(f"| {s} | {cell(r.get('served', r['prediction']))} |")
        lines.append("")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))
