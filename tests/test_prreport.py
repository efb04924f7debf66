import json
import subprocess
import sys

from supportagent.reporting.prreport import render


def _git(cwd, *args):
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)


def test_pr_report_shows_changed_params_and_metrics(tmp_path):
    dvc = str(__import__("pathlib").Path(sys.executable).parent / "dvc")
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "config", "user.email", "t@t")
    _git(tmp_path, "config", "user.name", "t")
    subprocess.run([dvc, "init", "-q"], cwd=tmp_path, check=True)
    (tmp_path / "params.yaml").write_text("method: qlora\ntrain:\n  qlora:\n    lr: 0.001\n")
    (tmp_path / "metrics").mkdir()
    (tmp_path / "metrics/served.json").write_text(json.dumps({"rouge_l": 15.0, "bleu": 2.0, "n": 96}))
    (tmp_path / "dvc.yaml").write_text("stages:\n  s:\n    cmd: 'true'\n    params: [method, train.qlora]\n"
                                       "    metrics:\n    - metrics/served.json:\n        cache: false\n")
    _git(tmp_path, "add", "-A")
    _git(tmp_path, "commit", "-qm", "base")
    (tmp_path / "params.yaml").write_text("method: qlora\ntrain:\n  qlora:\n    lr: 0.002\n")
    (tmp_path / "metrics/served.json").write_text(json.dumps({"rouge_l": 19.5, "bleu": 2.0, "n": 96}))
    text = render("HEAD", cwd=tmp_path, plots_url="https://example/plots")
    assert "| params.yaml | `train.qlora.lr` | 0.001 | 0.002 |" in text
    assert "`rouge_l` | 15.00 | 19.50 | 4.50 |" in text
    assert "bleu" not in text  # unchanged metrics are not listed
    assert "https://example/plots" in text
