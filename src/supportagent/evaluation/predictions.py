"""Per-example predictions of a system as JSON lines; the first line names the base they were made with."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from ..model import bases


def write_predictions(path: str | Path, rows: pd.DataFrame, base_dir: str) -> None:
    """JSON lines; the first line records the base model the predictions came from."""
    manifest, _ = bases.read_manifest(base_dir)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as f:
        f.write(json.dumps({"_base": manifest}) + "\n")
        for rec in rows.to_dict("records"):
            f.write(json.dumps(rec, default=str) + "\n")


def read_predictions(path: str | Path, base_dir: str | None = None) -> pd.DataFrame:
    """The rows of a predictions file; with `base_dir`, only if they were made with that base."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: run `dvc repro evaluate` first")
    lines = path.read_text().splitlines()
    header = json.loads(lines[0]) if lines else {}
    manifest = bases.read_manifest(base_dir)[0] if base_dir is not None else header.get("_base")
    if header.get("_base") != manifest:
        raise ValueError(f"{path} was produced with base {header.get('_base', {}).get('base')}, not the current "
                         f"base {manifest.get('base')}: rerun `dvc repro` so every system uses the same base")
    return pd.DataFrame([json.loads(x) for x in lines[1:]])
