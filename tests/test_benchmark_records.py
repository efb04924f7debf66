"""Benchmark records (supportagent.reporting.records): one schema, one file per run, the generic report built on
them."""
import json
import re

import pytest

from supportagent.reporting import records
from supportagent.reporting.report import benchmark_section, figure_tables, render

from conftest import ROOT

CPU = {"cpu": "AMD EPYC", "cores": 2, "avx512_bf16": True, "amx_bf16": False, "avx2": True}


def test_a_nested_result_becomes_one_flat_record():
    r = records.make("demo", {"command": "python benchmarks/demo.py --n 2", "commit": "abc1234", "date": "2026-12-01",
                              "machine": CPU, "notes": "why", "levels": [{"p50_ms": 5.0}, {"p50_ms": 7.5}],
                              "speedup": {"16": 2.1}, "ok": True,
                              "targets": [records.target("speed-up at 16", 2.1, ">= 2.5")]})
    assert r.metrics == {"levels.0.p50_ms": 5.0, "levels.1.p50_ms": 7.5, "speedup.16": 2.1, "ok": True}
    assert (r.command, r.commit, r.notes) == ("python benchmarks/demo.py --n 2", "abc1234", "why")
    assert r.targets[0].met is False and records.unflatten(r.metrics)["levels"]["1"] == {"p50_ms": 7.5}


def test_targets_compare_numbers_and_equal_values():
    assert records.target("a", 3, "<= 3")["met"] and not records.target("a", 3.1, "<= 3")["met"]
    assert records.target("b", 0.95, ">= 0.9")["met"] and not records.target("b", None, ">= 0.9")["met"]
    assert records.target("c", "1ef5", "1ef5")["met"] and not records.target("c", "1ef6", "1ef5")["met"]


@pytest.mark.parametrize("bad", [{"metrics": {}}, {"command": " "}, {"machine": {}}, {"extra_field": 1}])
def test_a_record_without_its_facts_is_refused(bad):
    good = {"benchmark": "demo", "command": "python x.py", "commit": "abc", "date": "2026-12-01", "machine": CPU,
            "metrics": {"a": 1}}
    records.Record.model_validate(good)
    with pytest.raises(ValueError):
        records.Record.model_validate({**good, **bad})


def test_one_file_per_machine_and_commit_a_repeat_replaces_its_own(tmp_path):
    first = records.save("demo", {"p50": 1.0, "machine": CPU, "commit": "aaa"}, root=tmp_path)
    records.save("demo", {"p50": 2.0, "machine": CPU, "commit": "bbb"}, root=tmp_path)
    records.save("demo", {"p50": 3.0, "machine": {**CPU, "avx512_bf16": False}, "commit": "aaa"}, root=tmp_path)
    assert first.name == "amd-epyc-2c-avx512bf16-aaa.json"
    assert sorted(p.name for p in (tmp_path / "demo").iterdir()) == [
        "amd-epyc-2c-avx2-aaa.json", "amd-epyc-2c-avx512bf16-aaa.json", "amd-epyc-2c-avx512bf16-bbb.json"]
    records.save("demo", {"p50": 4.0, "machine": CPU, "commit": "aaa"}, root=tmp_path)  # a repeat
    assert json.loads(first.read_text())["metrics"] == {"p50": 4.0}
    assert records.existing("demo", root=tmp_path, machine=CPU, commit="bbb").metrics == {"p50": 2.0}
    assert records.existing("demo", root=tmp_path, machine=CPU, commit="ccc") is None


def test_a_record_saved_without_a_folder_lands_in_the_projects_results(monkeypatch):
    saved = []
    monkeypatch.setattr(records.Path, "mkdir", lambda self, **kw: None)
    monkeypatch.setattr(records.Path, "write_text", lambda self, text: saved.append(self))
    records.save("demo", {"p50": 1.0, "machine": CPU, "commit": "aaa"})
    assert saved == [ROOT / "benchmarks/results/demo/amd-epyc-2c-avx512bf16-aaa.json"]


def test_machine_names_tell_gpus_and_cpu_kinds_apart():
    assert records.machine_name({"gpu": "NVIDIA H200", "gpus": 2}) == "2x-nvidia-h200"
    assert records.machine_name({"cpu": "Intel(R) Xeon(R)", "cores": 2, "amx_bf16": True}) == "intel-r-xeon-r-2c-amx"


def test_commit_is_none_without_git(monkeypatch):
    """A bare GPU machine has no git: the record's commit is None (pass `commit=`), not a crash."""
    def no_git(*args, **kwargs):
        raise FileNotFoundError("git")

    assert re.fullmatch(r"[0-9a-f]+", records.commit() or "")
    monkeypatch.setattr(records.subprocess, "run", no_git)
    assert records.commit() is None


def test_every_committed_record_fits_the_schema_and_names_its_run():
    runs = records.load_all(ROOT / records.RESULTS)
    assert runs, "no benchmark records"
    for r in runs:
        assert re.search(r"\b(python|dvc|torchrun)\b", r.command) and r.commit and r.machine and r.metrics, r.benchmark
    files = list((ROOT / records.RESULTS).glob("*/*.json"))
    assert len(files) == len(runs) and not list((ROOT / "benchmarks").glob("*.json"))  # one schema, no old shapes


def test_a_recorded_command_names_no_path_of_the_machine_it_ran_on(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "benchmarks").mkdir()
    monkeypatch.setattr(records.sys, "argv", [str(tmp_path / "benchmarks/x.py"), "--llama-server",
                                              "/opt/llama.cpp/build/bin/llama-server", "--out=/tmp/sweep.json",
                                              f"--workdir={tmp_path}/build/full", "--n", "16"])
    assert records.invocation() == ("python benchmarks/x.py --llama-server <path>/llama-server --out=<path>/sweep.json"
                                    " --workdir=build/full --n 16")
    for r in records.load_all(ROOT / records.RESULTS):
        assert not re.search(r"(?<![\w.<>])/(?:work|tmp|home|root|opt|mnt)/", r.command), r.command


def test_no_benchmark_script_patches_sys_path():
    for script in (ROOT / "benchmarks").glob("*.py"):
        assert "sys.path" not in script.read_text(), script.name


def test_the_report_shows_the_latest_run_per_machine_and_the_others_in_a_row_each():
    run = lambda commit, date, machine, p50, met: records.make(  # noqa: E731
        "demo", {"p50_ms": p50, "targets": [records.target("p50 ms", p50, "<= 10")] if met is not None else []},
        command="python benchmarks/demo.py", commit=commit, date=date, machine=machine)
    runs = [run("ccc", "2026-12-03", CPU, 12.5, False), run("bbb", "2026-12-02", {"gpu": "NVIDIA H200"}, 3.0, True),
            run("aaa", "2026-12-01", CPU, 9.0, True)]
    text = "\n".join(benchmark_section("demo", runs))
    assert text.count("### 2026-12-0") == 2 and "| p50 ms | 12.5 | <= 10 | **no** |" in text
    assert "### Earlier runs" in text and "| 2026-12-01 | aaa | AMD EPYC, cores 2, avx512_bf16 True, amx_bf16 False " \
                                          "| 1 of 1 | 9.0 |" in text


def test_a_run_with_a_param_changed_never_stands_for_the_defaults_in_the_report():
    run = lambda commit, date, overrides: records.make(  # noqa: E731
        "demo", {"p50_ms": 1.0}, command="python benchmarks/demo.py", commit=commit, date=date, machine=CPU,
        overrides=overrides)
    runs = [run("ccc", "2026-12-03", {"evaluate.candidates": 0}), run("bbb", "2026-12-02", {}),
            run("aaa", "2026-12-01", {})]
    text = "\n".join(benchmark_section("demo", runs))
    assert "### 2026-12-03, commit ccc" in text and "### 2026-12-02, commit bbb" in text  # both in full
    assert "### Earlier runs" in text and "| 2026-12-01 | aaa |" in text


def test_figures_group_into_tables_by_their_shared_leaves_as_recorded():
    text = "\n".join(figure_tables({"a.rouge_l": 25.79, "a.bleu": 1.0, "b.rouge_l": 23.0, "b.bleu": 2.0,
                                    "share": 0.0086, "name": "x|y"}))
    assert "| figure | rouge_l | bleu |" in text and "| a | 25.79 | 1.0 |" in text and "| b | 23.0 | 2.0 |" in text
    assert "| figure | share | name |" in text and "| (all) | 0.0086 | x\\|y |" in text  # unrounded, escaped


def test_the_committed_report_is_rendered_from_the_records():
    text = render(ROOT)
    for r in records.load_all(ROOT / records.RESULTS):
        assert f"## {r.benchmark}" in text and r.commit in text
