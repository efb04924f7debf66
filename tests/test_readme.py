"""The README's results block is generated from the committed metrics files."""
import pytest

from supportagent.readme import END, START, render_tables, update_readme

from conftest import ROOT


def test_readme_tables_match_the_committed_metrics():
    if not (ROOT / "metrics/eval/qlora.json").exists():
        pytest.skip("no committed metrics")
    assert update_readme(ROOT / "README.md", ROOT, check=True), "README results are stale: run `make readme`"


def test_render_is_deterministic_and_has_every_table():
    if not (ROOT / "metrics/eval/qlora.json").exists():
        pytest.skip("no committed metrics")
    text = render_tables(ROOT)
    assert text == render_tables(ROOT)
    for heading in ["Verdict", "Data after", "Quality on the test split", "Per brand", "Training cost", "Serving cost"]:
        assert heading in text


def test_a_changed_metric_makes_the_check_fail(tmp_path):
    import shutil

    for d in ["metrics", "benchmarks"]:
        shutil.copytree(ROOT / d, tmp_path / d)
    shutil.copy(ROOT / "dvc.yaml", tmp_path)  # where the metrics are
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{START}\nold\n{END}\n")
    assert not update_readme(readme, tmp_path, check=True)
    update_readme(readme, tmp_path)
    assert update_readme(readme, tmp_path, check=True) and "intro" in readme.read_text()
