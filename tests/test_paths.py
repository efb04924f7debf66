"""Paths live in one place: dvc.yaml's `vars: paths`. Stages get them as arguments, the CLI reads its defaults there."""
import ast
import re
import subprocess
import sys
from argparse import Namespace
from pathlib import Path

import pytest
import yaml

from conftest import ROOT
from supportagent.__main__ import _with_pipeline_paths
from supportagent.errors import UserError
from supportagent.paths import interpolate, pipeline_paths

PIPELINE_DIRS = ("data/", "models/", "metrics/", "reports/", "plots/", "dvclive", "checkpoints")
IN_CODE = tuple(d.rstrip("/") + "/" for d in PIPELINE_DIRS)  # "checkpoints" alone is an argument's name
NOT_STAGE_OUTPUTS = ("plots/png", "reports/benchmarks.md")  # written by `make plots` and `make readme`, not by stages


def _string_constants(path: Path) -> list[str]:
    """String literals of a module, docstrings left out."""
    tree = ast.parse(path.read_text())
    docs = {id(n.body[0].value) for n in ast.walk(tree) if isinstance(n, (ast.Module, ast.FunctionDef, ast.ClassDef))
            and n.body and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
    return [n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)
            and id(n) not in docs]


def test_stage_scripts_and_the_library_name_no_pipeline_path():
    files = [*(ROOT / "stages").glob("*.py"), *(ROOT / "src/supportagent").glob("*.py")]
    found = {f.name: s for f in files for s in _string_constants(f)
             if s.startswith(IN_CODE) and "/full" not in s and not s.startswith(NOT_STAGE_OUTPUTS)}
    assert not found, f"pipeline paths written outside dvc.yaml: {found}"


def test_dvc_yaml_stages_take_every_path_from_the_paths_block():
    spec = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    text = yaml.safe_dump(spec["stages"]) + yaml.safe_dump(spec["plots"])
    literal = [w for w in re.findall(r"[\w./${}-]+", text) if w.startswith(PIPELINE_DIRS)]
    assert not literal, literal
    paths = pipeline_paths(ROOT / "dvc.yaml")
    used = set(re.findall(r"\$\{paths\.(\w+)\}", text))
    assert used == set(paths), f"unused: {set(paths) - used}, undefined: {used - set(paths)}"


def test_every_stage_script_requires_the_paths_dvc_yaml_passes(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "stages/split.py")], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 2 and "--pairs" in proc.stderr and "required" in proc.stderr


def test_the_cli_takes_missing_paths_from_dvc_yaml(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    args = _with_pipeline_paths(Namespace(base=None, index=Path("elsewhere/index")), "base", "index")
    assert args.base == Path("models/base") and args.index == Path("elsewhere/index")
    monkeypatch.chdir(tmp_path)  # no dvc.yaml here: say what to do
    with pytest.raises(UserError, match="project's root folder"):
        _with_pipeline_paths(Namespace(base=None), "base")


def test_interpolation_fails_by_name_on_an_undefined_path():
    assert interpolate("${paths.base}/manifest.json", {"base": Path("models/base")}) == "models/base/manifest.json"
    with pytest.raises(UserError, match="paths.nope"):
        interpolate("${paths.nope}", {"base": Path("models/base")})
