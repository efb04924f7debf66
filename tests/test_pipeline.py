"""End-to-end: the real `dvc repro` of every stage on a tiny configuration in a temporary copy."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from supportagent.inference.checks import CHECKS
from supportagent.inference.guard import PATHS

from conftest import ROOT

pytestmark = pytest.mark.slow
BRANDS = ["SpotifyCares", "AmazonHelp", "AppleSupport", "Uber_Support", "ChipotleTweets", "Tesco"]


def _raw_csv(path: Path) -> None:
    rows, tid = [], 1
    for b, brand in enumerate(BRANDS):
        for i in range(14 - 2 * (b == 5)):
            cust = f"@{brand} order {i} for item {b} is late and the app shows an error code {i * 7}"
            rows.append([tid, f"user{tid}", True, "Tue Oct 31 22:10:47 +0000 2017", cust, tid + 1, ""])
            rows.append([tid + 1, brand, False, "Tue Oct 31 22:12:47 +0000 2017",
                         f"@user{tid} Sorry about order {i}! Please DM us the details and we'll fix it. ^JK", "", tid])
            tid += 2
    pd.DataFrame(rows, columns=["tweet_id", "author_id", "inbound", "created_at", "text", "response_tweet_id",
                                "in_response_to_tweet_id"]).to_csv(path, index=False)


def _dvc(cwd, *args, stderr=False):
    # stage commands call `python`: it must be this environment's, as with an activated venv
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    proc = subprocess.run([str(bin_dir / "dvc"), *args], cwd=cwd, capture_output=True, text=True, timeout=900, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout + (proc.stderr if stderr else "")


def _commit(work: Path, message: str) -> None:
    for cmd in (["git", "add", "-A"], ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", message]):
        subprocess.run(cmd, cwd=work, check=True, capture_output=True)


def _exp_show(work: Path) -> str:
    """`make exp-show` in a 200-column terminal: `dvc exp show` with the Makefile's EXP_COLUMNS filter."""
    line = next(x for x in (ROOT / "Makefile").read_text().splitlines() if x.startswith("EXP_COLUMNS := "))
    keep = line.split(" := ", 1)[1].replace("$$", "$")
    bin_dir = Path(sys.executable).parent
    proc = subprocess.run([str(bin_dir / "dvc"), "exp", "show", "--no-pager", "--drop", ".*", "--keep", keep], cwd=work,
                          capture_output=True, text=True, env={**os.environ, "COLUMNS": "200"})
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def _plots_page_draws(work: Path) -> None:
    """The run's `dvc plots show` page, with the project's templates, loads nothing remote and (with a browser)
    draws every plot."""
    from supportagent.reporting import plots

    shutil.copytree(ROOT / ".dvc/plots", work / ".dvc/plots")
    _dvc(work, "config", "plots.html_template", "plots/page.html")
    _dvc(work, "plots", "show", "-o", "dvc_plots")
    assert plots.remote_resources((work / "dvc_plots/index.html").read_text()) == []
    if plots.chromium() or os.environ.get("SUPPORTAGENT_REQUIRE_BROWSER"):
        marks = plots.drawn_marks(plots.render(work / "dvc_plots/index.html"))
        assert len(marks) == 7 and min(marks.values()) > 0, marks


def test_dvc_repro_end_to_end_on_a_tiny_configuration(tmp_path, tiny_base):
    work = tmp_path / "project"
    work.mkdir()
    for name in ["dvc.yaml", "params.yaml", "policy.yaml"]:
        shutil.copy(ROOT / name, work / name)
    for d in ["stages", "src", "data/labels"]:
        shutil.copytree(ROOT / d, work / d, ignore=shutil.ignore_patterns("__pycache__"))
    (work / "reports/review").mkdir(parents=True)
    shutil.copy(ROOT / "reports/review/ratings.csv", work / "reports/review/ratings.csv")  # header only
    (work / "data/raw").mkdir(parents=True)
    _raw_csv(work / "data/raw/twcs.csv")
    params = yaml.safe_load((work / "params.yaml").read_text())
    params["model"]["base"] = str(tiny_base / "hf")  # a local folder: recorded, not copied
    params["subset"]["max_pairs_per_brand"] = 10
    for m in ("qlora", "prompt_tuning"):
        params["train"][m].update(
            max_steps=2, batch_size=4, evals_per_epoch=100, saves_per_epoch=100, logs_per_epoch=100, max_val_pairs=4
        )
    params["evaluate"].update(test_size=4, max_new_tokens=4, latency_samples=2, batch_size=2)
    params["review"]["samples"] = 3
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    subprocess.run(["git", "init", "-q"], cwd=work, check=True)
    _dvc(work, "init", "-q")
    _commit(work, "the project, as a clone has it")  # DVCLive reads the baseline commit

    repro = _dvc(work, "repro", stderr=True)
    assert "pip install" not in repro and "Traceback" not in repro  # no warning a user cannot act on

    data = json.loads((work / "metrics/data.json").read_text())
    assert set(data["pairs_per_brand"]) == set(BRANDS[:5]) and data["dropped"]["brand_not_selected"] == 12
    split = json.loads((work / "metrics/split.json").read_text())
    assert sum(s["pairs"] for s in split.values()) == data["pairs"] == 50
    for system in ("zero_shot", "retrieval", "qlora", "prompt_tuning"):
        ev = json.loads((work / f"metrics/eval/{system}.json").read_text())
        assert ev["n"] == 4 and 0 <= ev["rouge_l"] <= 100 and ev["latency_p50_ms"] is not None
        assert 0 <= ev["send_ready"] <= 100 and set(ev["flag_rate"]) == set(CHECKS)
        rows = [json.loads(x) for x in (work / f"reports/predictions/{system}.jsonl").read_text().splitlines()[1:]]
        # every reply says how it was chosen, and a fallback is never sent without the reasons for it on record
        assert {r["path"] for r in rows} <= {*PATHS, "unguarded"} and all(
            r["path"] in ("passed", "past_reply", "unguarded") or r["passed_over"] for r in rows)
    comparison = json.loads((work / "metrics/comparison.json").read_text())
    assert comparison["method_to_ship"] in ("qlora", "prompt_tuning") and "send_ready" in comparison["real_replies"]
    assert "safety" in json.loads((work / "metrics/rules.json").read_text())
    assert json.loads((work / "metrics/served.json").read_text())["method"] == "qlora"
    assert (work / "reports/samples.md").read_text().count("| reference |") == 3
    assert json.loads((work / "metrics/review.json").read_text())["ratings"] == 0  # nobody has rated: no crash
    assert json.loads((work / "dvclive/qlora/metrics.json").read_text())["step"] == 2  # DVCLive's summary
    loss = pd.read_csv(work / "plots/compare/loss.csv")
    assert set(loss["method"]) == {"qlora", "prompt_tuning"} and loss["epoch"].between(0, 1.01).all()
    _plots_page_draws(work)
    assert "up to date" in _dvc(work, "status") or "Data and pipelines are up to date" in _dvc(work, "status")

    # switching the served method reruns only `compare`, no training
    params["method"] = "prompt_tuning"
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    status = _dvc(work, "status")
    assert "compare" in status and "train@" not in status and "evaluate@" not in status
    (work / "params.yaml").write_text(yaml.safe_dump({**params, "method": "qlora"}, sort_keys=False))

    # ... as a user does it: an experiment, then its decision metrics in a 200-column terminal
    _commit(work, "run")
    out = _dvc(work, "exp", "run", "-S", "method=prompt_tuning")
    assert "Running stage 'compare'" in out and "Running stage 'train@" not in out
    assert json.loads((work / "metrics/served.json").read_text())["method"] == "prompt_tuning"
    table = _exp_show(work)
    assert max(map(len, table.splitlines())) <= 200, table
    for column in ("method", "rouge_l", "bleu", "exact_match", "semantic_similarity", "latency_p50_ms", "adapter_mb",
                   "train_seconds", "retrieval.rouge_l"):
        assert column in table, (column, table)
    assert "prompt_tuning" in table and "qlora" in table  # the experiment's row and the baseline's
