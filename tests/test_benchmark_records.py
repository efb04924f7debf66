"""benchmarks/records.py: a re-run of a benchmark keeps the run it replaces."""
import json
import sys

from conftest import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))

import records  # noqa: E402


def test_a_rerun_keeps_the_run_it_replaces(tmp_path):
    out = tmp_path / "bench.json"
    first = {"what": "x", "commit": "aaa", "machine": {"cpu": "A"}, "p50": 1.0}
    records.save(out, first)
    assert json.loads(out.read_text()) == first  # nothing earlier: no empty list
    records.save(out, {**first, "commit": "bbb", "p50": 2.0})  # another commit
    records.save(out, {**first, "commit": "ccc", "machine": {"cpu": "B"}, "p50": 3.0})  # and another machine
    saved = json.loads(out.read_text())
    assert saved["p50"] == 3.0 and [e["p50"] for e in saved["earlier_runs"]] == [2.0, 1.0]
    assert all("earlier_runs" not in e for e in saved["earlier_runs"])  # flat: the newest earlier run first
    records.save(out, {**first, "commit": "ccc", "machine": {"cpu": "B"}, "p50": 4.0})  # a repeat replaces
    saved = json.loads(out.read_text())
    assert saved["p50"] == 4.0 and [e["p50"] for e in saved["earlier_runs"]] == [2.0, 1.0]


def test_the_pipeline_timing_keeps_the_run_it_replaces_among_its_other_runs(tmp_path):
    """benchmarks/cpu.json keeps runs under `other_runs`: a timing of a new commit puts the one it replaces first."""
    out = tmp_path / "cpu.json"
    out.write_text(json.dumps({"commit": "aaa", "machine": {"cpu": "A"}, "pipeline_seconds": 900.0,
                               "other_runs": [{"commit": "old", "note": "another setting"}]}))
    records.save(out, {"commit": "bbb", "machine": {"cpu": "A"}, "pipeline_seconds": 1000.0}, key="other_runs")
    saved = json.loads(out.read_text())
    assert [r["commit"] for r in saved["other_runs"]] == ["aaa", "old"] and "earlier_runs" not in saved


def test_commit_names_the_checkout():
    assert records.commit() and all(c in "0123456789abcdef" for c in records.commit())


def test_commit_is_none_without_git(monkeypatch):
    """A bare GPU machine has no git: the record's commit is None, not a crash."""
    def no_git(*args, **kwargs):
        raise FileNotFoundError("git")

    monkeypatch.setattr(records.subprocess, "run", no_git)
    assert records.commit() is None


def test_cpu_dtype_keeps_a_record_per_cpu_told_apart_by_its_bf16_instructions():
    """Two AMD EPYCs, one with AVX512-BF16 and one with AVX2 alone, share a model name: each keeps its record."""
    from cpu_dtype import other_machines

    epyc = lambda bf16, x: {"machine": {"cpu": "AMD EPYC", "avx512_bf16": bf16, "amx_bf16": False}, "x": x}
    xeon = {"machine": {"cpu": "Xeon", "avx512_bf16": True, "amx_bf16": False}, "x": 0}
    old = {**epyc(True, 1), "other_machines": [xeon, epyc(False, 9)]}
    assert other_machines(epyc(False, 2), old) == [epyc(True, 1), xeon]  # the AVX2 EPYC's old record is replaced
    assert other_machines(epyc(True, 3), old) == [xeon, epyc(False, 9)]  # a re-run replaces its own record only
