"""Markdown pieces shared by the review samples and the README: a table cell and a table."""
from __future__ import annotations


def cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ") or "*(empty)*"


def table(header: list[str], rows: list[list]) -> str:
    fmt = lambda v: "–" if v is None else (f"{v:,.2f}" if isinstance(v, float) else f"{v:,}" if isinstance(v, int) else str(v))
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(fmt(v) for v in r) + " |" for r in rows]
    return "\n".join(out)
