"""Markdown report of a pull request's effect: `dvc params diff` and `dvc metrics diff` against a base rev."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

KEY_METRICS = ("rouge_l", "bleu", "semantic_similarity", "exact_match", "distinct_replies", "placeholder_rate",
               "latency_p50_ms", "train_seconds", "adapter_mb")


def _dvc(args: list[str], cwd: Path) -> dict:
    dvc = Path(sys.executable).parent / "dvc"
    proc = subprocess.run([str(dvc) if dvc.exists() else "dvc", *args, "--json"], cwd=cwd, capture_output=True,
                          text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"dvc {' '.join(args)} failed: {proc.stderr.strip()[-2000:]}")
    return json.loads(proc.stdout or "{}")


def _fmt(v) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.4g}" if abs(v) < 1 else f"{v:,.2f}"
    return str(v)


def render(base: str, cwd: str | Path = ".", all_metrics: bool = False, plots_url: str | None = None) -> str:
    """Params that changed and metrics that moved between `base` and the workspace, as markdown."""
    cwd = Path(cwd)
    params = _dvc(["params", "diff", base], cwd)
    # the decision metrics (what dvc.yaml declares); --all adds the detail files, which are plain outputs
    detail = sorted(str(p.relative_to(cwd)) for p in (cwd / "metrics").rglob("*.json")) if all_metrics else []
    metrics = _dvc(["metrics", "diff", base, *(["--targets", *detail] if detail else [])], cwd)
    lines = [f"## Pipeline changes against `{base}`", "", "### Params", ""]
    rows = [(f, k, d.get("old"), d.get("new")) for f, keys in params.items() for k, d in keys.items()]
    if rows:
        lines += ["| file | param | base | this PR |", "|---|---|---|---|"]
        lines += [f"| {f} | `{k}` | {_fmt(o)} | {_fmt(n)} |" for f, k, o, n in rows]
    else:
        lines.append("No params changed.")
    lines += ["", "### Metrics", ""]
    rows = [(f, k, d.get("old"), d.get("new"), d.get("diff")) for f, keys in metrics.items() for k, d in keys.items()
            if all_metrics or k.split(".")[-1] in KEY_METRICS]
    if rows:
        lines += ["| file | metric | base | this PR | change |", "|---|---|---|---|---|"]
        lines += [f"| {f} | `{k}` | {_fmt(o)} | {_fmt(n)} | {_fmt(d)} |" for f, k, o, n, d in sorted(rows)]
    else:
        lines.append("No metrics changed.")
    if plots_url:
        lines += ["", f"Comparison plots: {plots_url}"]
    return "\n".join(lines) + "\n"
