"""The `dvc plots` page: offline, only the top-level plots of dvc.yaml, each drawn in a real browser."""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from conftest import ROOT
from supportagent.inference.checks import CHECKS
from supportagent.reporting import plots

DVC = str(Path(sys.executable).parent / "dvc")
PLOTS = ["training_loss", "validation_loss", "quality", "latency", "flags", "size_vs_quality", "review"]
# CI sets this so that a missing browser fails instead of skipping (.ci/run installs Debian's chromium)
needs_browser = pytest.mark.skipif(plots.chromium() is None and not os.environ.get("SUPPORTAGENT_REQUIRE_BROWSER"),
                                   reason="no Chromium: apt-get install chromium")


def _show(tmp_path, *args) -> Path:
    out = tmp_path / "page"
    proc = subprocess.run([DVC, "plots", *(args or ("show",)), "-o", str(out)], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return out / "index.html"


def test_the_dvc_plots_page_loads_nothing_from_the_network(tmp_path):
    html = _show(tmp_path).read_text()
    assert plots.remote_resources(html) == []
    assert "cdn.jsdelivr.net" not in html
    vendored = plots.inline_scripts(html)
    assert [p for p, _, _ in vendored] == [f"{n}@{v}" for n, v in plots.VEGA.items()]
    assert all(recorded == actual for _, recorded, actual in vendored), (
        "an inline script differs from its recorded hash"
    )
    # only the top-level plots of dvc.yaml: no plots generated from stage outputs
    assert re.findall(r'<div id = "([^"]+)">', html) == PLOTS


def test_remote_resources_are_found():
    page = ('<html><head><script src="https://cdn.example/vega.js"></script><link rel="stylesheet" href="//x/y.css">'
            '<style>@import url("https://fonts.example/f.css");</style><script src="local.js"></script></head></html>')
    assert plots.remote_resources(page) == ["<script src=https://cdn.example/vega.js>", "<link href=//x/y.css>",
                                            "@import https://fonts.example/f.css"]


def test_the_page_template_is_rebuilt_from_its_html_and_the_vendored_builds():
    page = (ROOT / plots.PAGE).read_text()
    source = plots.without_scripts(page)
    assert source.count(plots.SCRIPTS_MARK) == 1 and "{plot_divs}" in source and "{scripts}" not in source
    scripts = {m.group(1).rsplit("@", 1)[0]: m.group(3) for m in plots._VENDORED.finditer(page)}
    assert plots.build_page(source, scripts) == page
    with pytest.raises(ValueError, match="end the script"):
        plots.build_page(source, {"vega": "x = '</script>'"})


def test_loss_curves_are_put_on_epochs(tmp_path):
    from supportagent.model.trainlog import log_file

    log_dirs = {m: tmp_path / "dvclive" / m for m in ("qlora", "prompt_tuning")}
    for method, steps in (("qlora", 4), ("prompt_tuning", 16)):
        for metric, rows in (("train/loss", {"step": range(1, steps + 1), "loss": 2.0}),
                             ("eval/loss", {"step": [steps // 2, steps], "loss": [2.5, 2.4]})):
            log_file(log_dirs[method], metric).parent.mkdir(parents=True, exist_ok=True)
            pd.DataFrame(rows).to_csv(log_file(log_dirs[method], metric), sep="\t", index=False)
    # a resumed run logged steps 3 and 4 of QLoRA again: the later values count
    with log_file(log_dirs["qlora"], "train/loss").open("a") as f:
        f.write("3\t1.5\n4\t1.25\n")
    metrics = json.loads((ROOT / "metrics/eval/qlora.json").read_text())
    evals = {s: metrics for s in ("zero_shot", "retrieval", "qlora", "prompt_tuning")}
    trains = {"qlora": {"steps": 4, "epochs": 1.0}, "prompt_tuning": {"steps": 16, "epochs": 1.0}}
    plots.write_plot_data(evals, trains, log_dirs, tmp_path / "out")
    loss = pd.read_csv(tmp_path / "out/loss.csv")
    # batch 8 vs batch 2: 4 and 16 steps are both one epoch
    assert loss.groupby("method")["epoch"].max().to_dict() == {"prompt_tuning": 1.0, "qlora": 1.0}
    assert loss[loss["method"] == "qlora"]["loss"].tolist() == [2.0, 2.0, 1.5, 1.25]
    val = pd.read_csv(tmp_path / "out/val_loss.csv")
    assert val["epoch"].tolist() == [0.5, 1.0, 0.5, 1.0]
    quality = pd.read_csv(tmp_path / "out/quality.csv")
    assert len(quality) == 4 * 6 and set(quality.columns) == {"system", "metric", "value"}
    flags = pd.read_csv(tmp_path / "out/flags.csv")
    assert len(flags) == 4 * (len(CHECKS) - 1) and set(flags["system"]) == {
        "zero_shot",
        "retrieval",
        "qlora",
        "prompt_tuning",
    }


@needs_browser
def test_every_plot_draws_marks_in_headless_chromium(tmp_path):
    png = tmp_path / "page.png"
    marks = plots.drawn_marks(plots.render(_show(tmp_path), png))
    assert list(marks) == PLOTS
    # bars: 4 systems x 6 metrics; latency: a bar, whisker, tick and label per system; size: a point and label each
    assert marks["quality"] == 24 and marks["latency"] == 16 and marks["size_vs_quality"] == 8
    assert marks["flags"] == 5 * (len(CHECKS) - 1)  # 4 systems and the real replies x every check but `empty`
    assert marks["training_loss"] >= 4 and marks["validation_loss"] >= 4
    assert marks["review"] >= 1  # its bars, or the line saying nobody has rated yet
    assert png.stat().st_size > 50_000


@needs_browser
def test_plots_diff_draws_each_revision(tmp_path):
    """A repository holding only the plots (the project's definitions, templates, page and data): commit, change
    the served method's scores, and `dvc plots diff HEAD` draws both revisions."""
    import shutil

    import yaml

    repo = tmp_path / "repo"
    for d in ("plots/compare", "plots/review"):
        shutil.copytree(ROOT / d, repo / d)
    spec = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    (repo / "dvc.yaml").write_text(yaml.safe_dump({"vars": spec["vars"], "plots": spec["plots"]}))
    for cmd in (["git", "init", "-q"], [DVC, "init", "-q"], [DVC, "config", "plots.html_template", "plots/page.html"]):
        subprocess.run(cmd, cwd=repo, check=True, capture_output=True)
    shutil.copytree(ROOT / ".dvc/plots", repo / ".dvc/plots")
    subprocess.run(["git", "add", "-A"], cwd=repo, check=True)
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "base"], cwd=repo, check=True)
    quality = pd.read_csv(repo / "plots/compare/quality.csv")
    quality.loc[quality.system == "qlora", "value"] += 5
    quality.to_csv(repo / "plots/compare/quality.csv", index=False)

    proc = subprocess.run([DVC, "plots", "diff", "HEAD", "-o", "page"], cwd=repo, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    dom = plots.render(repo / "page/index.html")
    marks = plots.drawn_marks(dom)
    assert list(marks) == PLOTS and marks["quality"] == 2 * 24  # every bar once per revision
    assert "qlora @ HEAD" in dom and "qlora @ workspace" in dom  # one colour per system and revision


@needs_browser
def test_a_plot_without_data_is_reported_blank(tmp_path):
    page = (ROOT / plots.PAGE).read_text()
    spec = json.loads((ROOT / ".dvc/plots/val_loss.json").read_text().replace('"<DVC_METRIC_DATA>"', "[]"))
    div = f'<div id = "empty"><script>vegaEmbed("#empty", {json.dumps(spec)});</script></div>'
    (tmp_path / "index.html").write_text(page.replace("{plot_divs}", div).replace("{refresh_tag}", ""))
    assert plots.drawn_marks(plots.render(tmp_path / "index.html")) == {"empty": 0}
