"""The pull-request workflow would run on GitHub: actionlint (syntax, expressions, action inputs, and actions
whose runtime GitHub has removed, such as node20) finds nothing."""
import subprocess
import sys
from pathlib import Path

from conftest import ROOT

ACTIONLINT = Path(sys.executable).parent / "actionlint"


def _lint(*files) -> subprocess.CompletedProcess:
    return subprocess.run([str(ACTIONLINT), "-no-color", *map(str, files)], cwd=ROOT, capture_output=True, text=True)


def test_the_workflows_are_lint_clean():
    workflows = sorted((ROOT / ".github/workflows").glob("*.yml"))
    assert workflows
    proc = _lint(*workflows)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_actionlint_rejects_an_action_on_a_removed_runtime(tmp_path):
    old = tmp_path / "old.yml"
    old.write_text("on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n      - uses: actions/checkout@v4\n")
    proc = _lint(old)
    assert proc.returncode == 1 and "node20" in proc.stdout
