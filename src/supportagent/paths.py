"""Where the pipeline keeps its files. dvc.yaml's `vars: - paths:` block is the one list: DVC passes each
path to the stage scripts as an argument, and the command line (`reply`, `serve`) reads its defaults from it.
No library function defaults to a pipeline path."""
from __future__ import annotations

import re
from pathlib import Path

import yaml

from .errors import UserError

DVC_YAML = Path("dvc.yaml")


def pipeline_paths(dvc_yaml: str | Path = DVC_YAML) -> dict[str, Path]:
    """The `paths` variables of dvc.yaml, e.g. {"base": Path("models/base"), ...}."""
    dvc_yaml = Path(dvc_yaml)
    if not dvc_yaml.exists():
        raise UserError(f"{dvc_yaml} not found: run this from the project's root folder, or pass the paths as "
                        "options (see --help)")
    for block in yaml.safe_load(dvc_yaml.read_text()).get("vars") or []:
        if isinstance(block, dict) and "paths" in block:
            return {name: Path(p) for name, p in block["paths"].items()}
    raise UserError(f"{dvc_yaml} has no `vars: - paths:` block")


def interpolate(text: str, paths: dict[str, Path]) -> str:
    """`text` with each `${paths.<name>}` replaced, as DVC does when it runs a stage."""
    def sub(m: re.Match) -> str:
        if m.group(1) not in paths:
            raise UserError(f"dvc.yaml uses ${{paths.{m.group(1)}}}, which its `paths` block does not define")
        return str(paths[m.group(1)])
    return re.sub(r"\$\{paths\.(\w+)\}", sub, text)
