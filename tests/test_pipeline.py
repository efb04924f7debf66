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


def _dvc(cwd, *args):
    # stage commands call `python`: it must be this environment's, as with an activated venv
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    proc = subprocess.run([str(bin_dir / "dvc"), *args], cwd=cwd, capture_output=True, text=True, timeout=900, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


def test_dvc_repro_end_to_end_on_a_tiny_configuration(tmp_path, tiny_base):
    work = tmp_path / "project"
    work.mkdir()
    for name in ["dvc.yaml", "params.yaml"]:
        shutil.copy(ROOT / name, work / name)
    for d in ["stages", "src"]:
        shutil.copytree(ROOT / d, work / d, ignore=shutil.ignore_patterns("__pycache__"))
    (work / "data/raw").mkdir(parents=True)
    _raw_csv(work / "data/raw/twcs.csv")
    params = yaml.safe_load((work / "params.yaml").read_text())
    params["model"]["base"] = str(tiny_base / "hf")  # a local folder: recorded, not copied
    params["subset"]["max_pairs_per_brand"] = 10
    for m in ("qlora", "prompt_tuning"):
        params["train"][m].update(max_steps=2, batch_size=4, eval_every=1, save_every=1, log_every=1, max_val_pairs=4)
    params["evaluate"].update(test_size=4, max_new_tokens=4, latency_samples=2, review_samples=3, batch_size=2)
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    subprocess.run(["git", "init", "-q"], cwd=work, check=True)
    _dvc(work, "init", "-q")

    _dvc(work, "repro")

    data = json.loads((work / "metrics/data.json").read_text())
    assert set(data["pairs_per_brand"]) == set(BRANDS[:5]) and data["dropped"]["brand_not_selected"] == 12
    split = json.loads((work / "metrics/split.json").read_text())
    assert sum(s["pairs"] for s in split.values()) == data["pairs"] == 50
    for system in ("zero_shot", "retrieval", "qlora", "prompt_tuning"):
        ev = json.loads((work / f"metrics/eval/{system}.json").read_text())
        assert ev["n"] == 4 and 0 <= ev["rouge_l"] <= 100 and ev["latency_p50_ms"] is not None
    assert json.loads((work / "metrics/served.json").read_text())["method"] == "qlora"
    assert (work / "reports/samples.md").read_text().count("| reference |") == 3
    assert (work / "plots/png/quality.png").stat().st_size > 1000
    assert "up to date" in _dvc(work, "status") or "Data and pipelines are up to date" in _dvc(work, "status")

    # switching the served method reruns only `compare`, no training
    params["method"] = "prompt_tuning"
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    status = _dvc(work, "status")
    assert "compare" in status and "train@" not in status and "evaluate@" not in status
    _dvc(work, "repro")
    assert json.loads((work / "metrics/served.json").read_text())["method"] == "prompt_tuning"
