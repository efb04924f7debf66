"""Markdown pieces shared by the review samples and the README: a table cell, an interval and a table."""
from __future__ import annotations


def cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ") or "*(empty)*"


def span(v: dict | None, digits: int = 2) -> str | None:
    """A metrics file's 95% interval ({"ci95_low", "ci95_high"}) as "-0.49 to +6.62"; None where there is none."""
    if not v or v.get("ci95_low") is None:
        return None
    return f"{v['ci95_low']:+.{digits}f} to {v['ci95_high']:+.{digits}f}"


def table(header: list[str], rows: list[list]) -> str:
    fmt = lambda v: (
        "–" if v is None else (f"{v:,.2f}" if isinstance(v, float) else f"{v:,}" if isinstance(v, int) else str(v))
    )
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(fmt(v) for v in r) + " |" for r in rows]
    return "\n".join(out)
