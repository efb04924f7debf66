"""The README's results block and reports/benchmarks.md are generated from the committed metrics and records."""
import pytest

from supportagent.reporting.readme import END, REPORT, START, render_report, render_summary, update_readme

from conftest import ROOT


def test_readme_tables_match_the_committed_metrics():
    if not (ROOT / "metrics/eval/qlora.json").exists():
        pytest.skip("no committed metrics")
    assert update_readme(ROOT / "README.md", ROOT, check=True), "README results are stale: run `make readme`"


def test_render_is_deterministic_and_has_every_table():
    if not (ROOT / "metrics/eval/qlora.json").exists():
        pytest.skip("no committed metrics")
    summary, report = render_summary(ROOT), render_report(ROOT)
    assert summary == render_summary(ROOT) and report == render_report(ROOT)
    for heading in ["Verdict", "Quality on the test split", "Replies a desk would send"]:
        assert heading in summary
    for heading in ["## The committed pipeline run", "### `metrics/eval/qlora.json`", "## time_pipeline",
                    "## reply_checks"]:
        assert heading in report


def test_the_readme_is_short_with_the_answer_on_its_first_screen():
    """A newcomer reads the README in five minutes: at most 300 lines, the verdict within the first 60, the
    generated block at most 60 lines, no line a screen wide; the rest is in docs/ and reports/benchmarks.md."""
    text = (ROOT / "README.md").read_text()
    lines = text.splitlines()
    assert len(lines) <= 300
    assert next(i for i, line in enumerate(lines) if "Verdict from the numbers" in line) < 60
    assert lines.index(END) - lines.index(START) - 1 <= 60
    assert max(map(len, lines)) <= 400
    for link in ["docs/method.md", "docs/recommendation.md", "docs/gpu.md", "docs/benchmarks.md",
                 "docs/operations.md", REPORT]:
        assert f"]({link}" in text and (ROOT / link).exists(), link
    # and the code that writes the README's block and the report stays small: generic tables, no narration per record
    writers = ["readme.py", "report.py", "markdown.py"]
    assert sum(len((ROOT / "src/supportagent/reporting" / f).read_text().splitlines()) for f in writers) <= 300


def test_a_changed_metric_makes_the_check_fail(tmp_path):
    import shutil

    shutil.copytree(ROOT / "metrics", tmp_path / "metrics")
    shutil.copy(ROOT / "dvc.yaml", tmp_path)  # where the metrics are
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{START}\nold\n{END}\n")
    assert not update_readme(readme, tmp_path, check=True)
    update_readme(readme, tmp_path)
    assert update_readme(readme, tmp_path, check=True) and "intro" in readme.read_text()


def test_the_lead_over_retrieval_feeds_the_verdict_with_its_interval():
    """The verdict gives each method's 95% interval of the per-message lead, and names a method as surely ahead
    only when both intervals lie above 0."""
    from supportagent.config import METHODS
    from supportagent.reporting.readme import verdict

    base = {"rouge_l": 20.0, "semantic_similarity": 35.0, "latency_p50_ms": 0, "adapter_mb": 0.0}
    evals = {"zero_shot": base, "retrieval": base, **{m: {**base, "rouge_l": 22.0, "semantic_similarity": 35.5}
                                                      for m in METHODS}}
    trains = {m: {"train_seconds": 60} for m in METHODS}
    lead = lambda lo_r, lo_s: {"rouge_l": {"mean": 2.0, "ci95_low": lo_r, "ci95_high": 4.0},  # noqa: E731
                               "semantic_similarity": {"mean": 0.5, "ci95_low": lo_s, "ci95_high": 2.0}}
    text = "\n".join(verdict(evals, trains, {"qlora": lead(0.5, -1.0), "prompt_tuning": lead(0.5, 0.2)}))
    assert "+0.5 vs retrieval, 95% interval -1.0 to +2.0" in text
    assert "above 0 on both" in text and text.endswith("**prompt_tuning**.")
    text = "\n".join(verdict(evals, trains, {"qlora": lead(0.5, -1.0), "prompt_tuning": lead(-0.1, 0.2)}))
    assert text.endswith("**neither method**.")
    assert "interval" not in "\n".join(verdict(evals, trains))  # a run from before the intervals


def test_the_full_configuration_line_comes_from_its_own_metrics_and_only_when_they_exist(tmp_path):
    """The verdict adds the GPU `full` configuration's shipped method from metrics/full/ (nothing typed by hand),
    and says nothing of it where no full run was collected."""
    import json
    import shutil

    from supportagent.reporting.readme import full_configuration

    assert full_configuration(tmp_path) == []
    shutil.copytree(ROOT / "metrics/full", tmp_path / "full")
    comp = json.loads((tmp_path / "full/comparison.json").read_text())
    m = comp["method_to_ship"]
    comp[m]["send_ready"], comp["lead_over_retrieval"][m]["rouge_l"] = 87.4, {"mean": -1.25, "ci95_low": -3.0,
                                                                              "ci95_high": 0.5}
    (tmp_path / "full/comparison.json").write_text(json.dumps(comp))
    (line,) = full_configuration(tmp_path)
    assert f"**{m}** sends 87% with no flag ({comp[m]['past_reply_share']:.0f}% a past reply" in line
    assert "(-1.2 vs retrieval, 95% interval -3.0 to +0.5)" in line
