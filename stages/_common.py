"""Shared helpers of the DVC entry points: arguments, params loading, JSON writing, friendly errors."""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from supportagent.config import load_params
from supportagent.errors import ParamsError, UserError

PARAMS = Path(os.environ.get("SUPPORTAGENT_PARAMS", "params.yaml"))


def arguments(doc: str, *paths: str, items: tuple[str, ...] = ()) -> argparse.Namespace:
    """The stage's command line as dvc.yaml writes it: the foreach item (one of `items`), if any, and each of
    `paths` as a required `--name PATH` (dvc.yaml's `paths` variables say where the files are)."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    if items:
        parser.add_argument("item", choices=items)
    for name in paths:
        parser.add_argument(f"--{name.replace('_', '-')}", type=Path, required=True, metavar="PATH")
    return parser.parse_args()


def params():
    try:
        return load_params(PARAMS)
    except ParamsError as err:
        sys.exit(str(err))


def write_json(path: str | Path, obj) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2, sort_keys=False) + "\n")


def run(main) -> None:
    """Run a stage; known input errors exit with their message instead of a traceback."""
    try:
        main()
    except (UserError, FileNotFoundError) as err:
        sys.exit(f"error: {err}")
