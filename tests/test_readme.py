"""The README's results block and reports/benchmarks.md are generated from the committed metrics files."""
import pytest

from supportagent.readme import END, REPORT, START, render_report, render_summary, update_readme

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
    for heading in ["Data after", "Per brand", "Training cost", "Serving cost", "Targets on this machine"]:
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


def test_the_lead_over_retrieval_feeds_the_verdict_with_its_interval():
    """The verdict gives each method's 95% interval of the per-message lead, and names a method as surely ahead
    only when both intervals lie above 0."""
    from supportagent.config import METHODS
    from supportagent.readme import verdict

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


def test_the_full_configurations_targets_give_the_lead_interval_where_its_comparison_has_it(tmp_path):
    import json
    import shutil

    if not (ROOT / "metrics/full/comparison.json").exists():
        pytest.skip("no committed full-configuration metrics")
    for d in ["metrics", "benchmarks"]:
        shutil.copytree(ROOT / d, tmp_path / d)
    for f in ["dvc.yaml", "params.yaml"]:
        shutil.copy(ROOT / f, tmp_path)
    comp = json.loads((tmp_path / "metrics/full/comparison.json").read_text())
    lead = comp["lead_over_retrieval"]["qlora"]["semantic_similarity"]
    row = next(x for x in render_report(tmp_path).splitlines() if x.startswith("| qlora semantic similarity above"))
    assert f"95% interval {lead['ci95_low']:+.2f} to {lead['ci95_high']:+.2f})" in row
    del comp["lead_over_retrieval"]  # a run from before the intervals
    (tmp_path / "metrics/full/comparison.json").write_text(json.dumps(comp))
    row = next(x for x in render_report(tmp_path).splitlines() if x.startswith("| qlora semantic similarity above"))
    assert "interval" not in row


def test_the_reranking_record_feeds_its_section(tmp_path):
    """benchmarks/reranking.json: its own table, and the cost sentence that follows its test figures."""
    import json
    import shutil

    if not (ROOT / "benchmarks/reranking.json").exists():
        pytest.skip("no reranking record")
    for d in ["metrics", "benchmarks"]:
        shutil.copytree(ROOT / d, tmp_path / d)
    shutil.copy(ROOT / "dvc.yaml", tmp_path)
    record = json.loads((tmp_path / "benchmarks/reranking.json").read_text())
    n, test = record["evaluate"]["candidates"], record["splits"]["test"]
    served = record["served"]
    reranked, greedy = test[f"{served}, {n} candidates"], test[f"{served}, greedy"]
    text = render_report(tmp_path)
    assert f"### Reranking {n} sampled candidates" in text
    assert f"{served} {reranked['seconds'] - greedy['seconds']:,.1f} s more evaluation" in text
    reranked["seconds"] = greedy["seconds"] + 1234.5
    (tmp_path / "benchmarks/reranking.json").write_text(json.dumps(record))
    assert f"{served} 1,234.5 s more evaluation" in render_report(tmp_path)
    record["earlier_runs"] = [{"what": "an older reranker", "commit": "abc1234", "machine": {"avx512_bf16": True},
                               "test": {"qlora, 16 candidates": {"rouge_l": 24.5, "semantic_similarity": 38.25}},
                               "draws": 5, "draws_ahead": 4}]
    (tmp_path / "benchmarks/reranking.json").write_text(json.dumps(record))
    assert ("Earlier, an older reranker (commit abc1234, AVX512-BF16: True): qlora, 16 candidates 24.50 ROUGE-L, "
            "38.25 semantic sim.; ahead of retrieval on both metrics in 4 of 5 draws.") in render_report(tmp_path)


def test_the_reranking_draws_feed_their_spread(tmp_path):
    """benchmarks/reranking.json's other draws of the served method: a row per seed and a count of the draws ahead of
    retrieval on both metrics, which follows the figures."""
    import json
    import shutil

    record_path = ROOT / "benchmarks/reranking.json"
    if not record_path.exists() or "draws" not in json.loads(record_path.read_text()):
        pytest.skip("no draws in the reranking record")
    for d in ["metrics", "benchmarks"]:
        shutil.copytree(ROOT / d, tmp_path / d)
    shutil.copy(ROOT / "dvc.yaml", tmp_path)
    record = json.loads(record_path.read_text())
    runs, base = record["draws"]["runs"], record["splits"]["test"]["retrieval"]
    assert all(f"| {seed} | " in render_report(tmp_path) for seed in runs)
    for v in runs.values():
        v["rouge_l"], v["semantic_similarity"] = base["rouge_l"] + 1, base["semantic_similarity"] + 1
    first = next(iter(runs.values()))
    first["semantic_similarity"] = base["semantic_similarity"] - 2
    (tmp_path / "benchmarks/reranking.json").write_text(json.dumps(record))
    text = render_report(tmp_path)
    assert f"in {len(runs) - 1} of {len(runs)} draws" in text and "from -2.00 to +1.00 semantic" in text


def test_the_full_sweep_feeds_its_section():
    """benchmarks/full_sweep.json: a row per variant and candidate count, the spread of the unchanged configuration
    trained twice, and the same-draws comparison of candidate counts, each following the record's figures."""
    import copy
    import json

    from supportagent.benchmark_tables import full_sweep_tables

    if not (ROOT / "benchmarks/full_sweep.json").exists():
        pytest.skip("no full sweep record")
    record = json.loads((ROOT / "benchmarks/full_sweep.json").read_text())
    full = {"evaluate_candidates": 32, "metrics": {"eval/qlora": {"latency_p50_ms": 2000.0}},
            "earlier_runs": [{"evaluate_candidates": 16, "latency_p50_ms": {"qlora": 1000.0}, "commit": "abc1234"},
                             {"evaluate_candidates": 0, "latency_p50_ms": {"qlora": 500.0}, "date": "2026-11-26"}]}
    text = "\n".join(full_sweep_tables(record, full))
    for run in record["runs"]:
        for r in run["results"]:
            assert all(f"| {r['variant']} |" in text and f"| {v['rouge_l']:.2f} |" in text for v in r["val"].values())
    assert ("2,000 ms, against 1,000 ms in the run of abc1234 (16 candidates), 500 ms in the run of 2026-11-26 "
            "(0 candidates)") in text
    changed = copy.deepcopy(record)
    for run in changed["runs"]:
        for v in run.get("candidate_subsets", {}).values():
            if {"16", "32", "48"} <= set(v):
                v["16"]["rouge_l"], v["32"]["rouge_l"], v["48"]["rouge_l"] = 20.0, 22.5, 22.0
    text = "\n".join(full_sweep_tables(changed, full))
    assert "32 candidates beat 16 by +2.50 to +2.50 ROUGE-L and came within 0.50 of 48, so configs/full.yaml samples 32" in text
    for run in changed["runs"]:
        for r in run["results"]:
            if r["variant"] == "as_is" and "16" in r["val"]:
                r["val"]["16"]["rouge_l"] = 11.11
    assert "trained twice scored 11.11 and 11.11 ROUGE-L" in "\n".join(full_sweep_tables(changed, full))


def test_seed_runs_feed_their_table():
    """Seed runs of a configuration (the full one's after its pipeline run): a row each, the spread, the count of runs
    meeting the ROUGE-L target and of runs ahead of retrieval on each metric, computed from the figures."""
    from supportagent.benchmark_tables import seed_run_lines

    keys = {"semantic_similarity": 40.0, "bleu": 15.0, "distinct_replies": 80.0, "placeholder_rate": 0.0}
    main = {"seed": 42, "rouge_l": 30.5, **keys, "final_val_loss": 1.45}
    runs = {"machine": {"gpu": "GPU X"}, "date": "2026-01-01", "commit": "abc1234",
            "runs": [{"seed": 43, "rouge_l": 29.25, **keys, "semantic_similarity": 37.0, "final_val_loss": 1.5},
                     {"seed": 44, "rouge_l": 31.0, **keys, "final_val_loss": 1.4}]}
    retrieval = {"rouge_l": 29.5, "semantic_similarity": 37.5}
    text = "\n".join(seed_run_lines(runs, retrieval, "Intro", (main,), target=30))
    assert text.startswith("Intro (`seed` draws") and "commit abc1234" in text
    assert "| 42 | 30.50 |" in text and "| 43 | 29.25 | 37.00 |" in text and "| 44 | 31.00 |" in text
    assert "from 29.25 to 31.00 over 3 seeds; 2 of 3 at or above 30; semantic similarity from 37.00 to 40.00" in text
    assert "ahead on ROUGE-L in 2 of 3 runs, on semantic similarity in 2 of 3 (by +1.50 on average)" in text
    alone = "\n".join(seed_run_lines(runs, retrieval, "Intro"))  # no lead run, no target
    assert "from 29.25 to 31.00 over 2 seeds; semantic" in alone and "at or above" not in alone
    assert "on semantic similarity in 1 of 2 (by +1.00 on average)" in alone


def test_cpu_seed_runs_show_each_runs_interval_and_count_the_sure_leads():
    """cpu_seeds.json's runs carry their per-message lead over retrieval: an interval column per metric, and the
    count of runs whose whole interval lies above 0; the machine is the CPU's."""
    from supportagent.benchmark_tables import seed_run_lines

    lead = lambda lo, hi: {"rouge_l": {"mean": 2.0, "ci95_low": 0.4, "ci95_high": 3.6},  # noqa: E731
                           "semantic_similarity": {"mean": (lo + hi) / 2, "ci95_low": lo, "ci95_high": hi}}
    keys = {"rouge_l": 25.0, "bleu": 12.0, "distinct_replies": 90.0, "placeholder_rate": 0.0, "final_val_loss": 2.1}
    record = {"machine": {"cpu": "AMD EPYC", "cores": 2, "training_dtype": "bfloat16"}, "date": "2026-01-01",
              "commit": "abc1234", "runs": [{"seed": 42, **keys, "semantic_similarity": 39.0, "lead_over_retrieval": lead(0.1, 2.5)},
                                            {"seed": 43, **keys, "semantic_similarity": 37.0, "lead_over_retrieval": lead(-2.0, 1.0)}]}
    text = "\n".join(seed_run_lines(record, {"rouge_l": 23.0, "semantic_similarity": 37.5}, "Intro", source="`x`"))
    assert "2 cores, AMD EPYC, training in bfloat16, 2026-01-01, commit abc1234; `x`" in text
    assert "| 43 | 25.00 | 37.00 |" in text and "| -2.00 to +1.00 |" in text and "| +0.10 to +2.50 |" in text
    assert "above 0 on ROUGE-L in 2 of 2 runs, on semantic similarity in 1 of 2." in text


def test_the_default_configurations_seed_runs_have_their_section(tmp_path):
    """gpu_h100.json's default.seed_runs become their own README section, measured against the record's own
    retrieval run; without them the section is absent. The default's earlier runs follow its stage table."""
    import json

    from supportagent.benchmark_tables import gpu_tables

    g = json.loads((ROOT / "benchmarks/gpu_h100.json").read_text())
    text = "\n".join(gpu_tables(g, {}, tmp_path))
    r = g["configurations"]["default"]["seed_runs"]
    ret = r["baselines"]["retrieval"]
    ahead = sum(x["semantic_similarity"] > ret["semantic_similarity"] for x in r["runs"])
    assert "### Training seeds of the default configuration on the GPU" in text
    assert f"on semantic similarity in {ahead} of {len(r['runs'])}" in text
    assert f"retrieval {ret['rouge_l']:.2f} / {ret['semantic_similarity']:.2f}" in text
    default = g["configurations"]["default"]
    q = default["metrics"]["eval/qlora"]
    how = "one stage at a time" if default["jobs"] == 1 else f"--jobs {default['jobs']}"
    assert (f"The same seed in the stage table's run ({default['machine']['gpu']}, {how}, commit "
            f"{default['commit']}" in text and f"qlora {q['rouge_l']:.2f} / {q['semantic_similarity']:.2f}" in text)
    one = default.pop("one_stage_at_a_time", None)
    if one:  # a run of the same code one stage at a time that ended early: its stages, their sum, what it lacks
        missing = [k for k in default["stage_seconds"] if k not in one["stage_seconds"]]
        assert missing and (f"a run that ended before {', '.join(missing)}): subset {one['stage_seconds']['subset']} s"
                in text and f"; {sum(one['stage_seconds'].values()):,.1f} s for these {len(one['stage_seconds'])} "
                "stages." in text)
        assert "The same commit one stage after another" not in "\n".join(gpu_tables(g, {}, tmp_path))
    default["jobs"] = 1
    assert "one stage at a time, commit" in "\n".join(gpu_tables(g, {}, tmp_path))
    e = default["earlier_runs"][0]
    assert f"Earlier, the default params at commit {e['commit']} ({e['date']}" in text
    assert f"{e['model_stages_seconds']:,} s one stage after another" in text
    del default["commit"]  # a run of code older than the seed runs' is not set beside them
    assert "in the stage table's run" not in "\n".join(gpu_tables(g, {}, tmp_path))
    del g["configurations"]["default"]["seed_runs"]
    assert "Training seeds of the default" not in "\n".join(gpu_tables(g, {}, tmp_path))


def test_the_seeds_paragraph_follows_the_soup_run():
    """The seeds of the unchanged configuration, their soup and their pooled candidates: figures from the record, and
    the verdict turns when the soup beats the best single seed."""
    from supportagent.benchmark_tables import soup_lines

    member = lambda name, seed, rouge: {"variant": name, "changes": {"seed": seed} if seed else {},
                                        "val": {"32": {"rouge_l": rouge}}}
    run = {"results": [member("as_is", None, 28.0), member("seed_43", 43, 27.5), member("seed_44", 44, 28.5),
                       {"variant": "soup_3", "soup_of": ["as_is", "seed_43", "seed_44"], "changes": {},
                        "val": {"32": {"rouge_l": 28.25}}}],
           "candidate_subsets": {"pooled/soup_3/32": {"rouge_l": 27.9, "per_variant": 10, "pool": 33}}}
    text = "\n".join(soup_lines({"runs": [{"results": []}, run]}))
    assert "scored 28.00, 27.50, 28.50 ROUGE-L, a spread of 1.00" in text
    assert "(`soup_3`, a model soup), scored 28.25; their candidates pooled (10 sampled" in text and "33 in all) 27.90" in text
    assert "Neither beat the best single seed" in text
    run["results"][-1]["val"]["32"]["rouge_l"] = 29.0
    assert "worth its cost" in "\n".join(soup_lines({"runs": [run]}))
    assert soup_lines({"runs": [{"results": [member("as_is", None, 28.0)]}]}) == []


def test_the_selection_paragraph_follows_the_grid():
    """The reranker's grid (`full_sweep.py --selection`): the former and the chosen setting with their figures, the
    best setting of each metric once, and the differences computed from the record."""
    from supportagent.benchmark_tables import selection_lines

    point = lambda r, s, d: {"rouge_l": r, "semantic_similarity": s, "distinct_replies": d}
    grid = {"R2_w0.5_x1.0": point(27.0, 40.0, 78.0), "R16_w0.75_x4.0": point(28.5, 41.0, 80.0),
            "R16_w1.0_x2.0": point(29.0, 39.0, 73.0), "R16_w0.25_x8.0": point(27.5, 44.0, 88.0)}
    record = {"runs": [{"results": []}, {"results": [], "selection": {"as_is/candidates_32": grid}}]}
    text = "\n".join(selection_lines(record, "R16_w0.75_x4.0"))
    assert "(run 2, as_is, 32 candidates; `--selection`, 4 settings)" in text
    assert "| chosen: R=16 references, w=0.75 ROUGE-L, each x4.0 a candidate | 28.50 | 41.00 | 80.00 |" in text
    assert "| best ROUGE-L: R=16 references, w=1.0 ROUGE-L, each x2.0 a candidate | 29.00 |" in text
    assert "| best semantic sim. and distinct %: R=16 references, w=0.25" in text  # one row for one setting
    assert "ROUGE-L +1.50, semantic sim. +1.00, distinct % +2.00" in text and "(39.0 and 73.0)" in text
    assert selection_lines({"runs": [{"results": []}]}, "R16_w0.75_x4.0") == []


def test_the_gpu_sampling_record_feeds_its_section_and_the_engine_check_its_candidates():
    """benchmarks/gpu_sampling.json: the two sampling loops' table and the speed-up computed from it; the engine
    check's sentence counts the candidates drawn alike."""
    import json

    from supportagent.benchmark_tables import engine_check_sentence, gpu_sampling_tables

    record = json.loads((ROOT / "benchmarks/gpu_sampling.json").read_text())
    eager, compiled = record["results"]["eager"], record["results"]["compiled"]
    text = "\n".join(gpu_sampling_tables(record))
    assert f"| compiled | {compiled['warm_up_seconds']:,.2f} | {compiled['p50_ms']:,.2f} |" in text
    assert f"{eager['p50_ms'] / compiled['p50_ms']:.1f}x as fast" in text
    compiled["p50_ms"] = eager["p50_ms"] / 2
    assert "2.0x as fast" in "\n".join(gpu_sampling_tables(record))
    compiled["graph_compile_seconds"] = [38.23, 36.2]
    assert "torch.compile took 74.4 s on 2 graphs (38.2 s, 36.2 s)." in "\n".join(gpu_sampling_tables(record))
    compiled["graph_compile_seconds"] = []
    assert "torch.compile took" not in "\n".join(gpu_sampling_tables(record))
    record["earlier_runs"] = [{"what": "an older reranker", "commit": "abc1234", "machine": {"gpu": "GPU X"},
                               "results": {"eager": {"p50_ms": 1500.0}, "compiled": {"p50_ms": 100.4}}}]
    assert ("Earlier, an older reranker (commit abc1234, GPU X): p50 1,500 ms eager, 100 ms compiled."
            in "\n".join(gpu_sampling_tables(record)))
    record["earlier_runs"][0]["results"]["compiled"]["warm_up_seconds"] = 59.24
    assert ("p50 1,500 ms eager, 100 ms compiled (warm-up 59.2 s)." in "\n".join(gpu_sampling_tables(record)))
    check = json.loads((ROOT / "benchmarks/gpu_engine_check.json").read_text())
    assert "draws the eager loop's candidates" in engine_check_sentence(check)
    check["same_candidates_of_32"] = {"base penalty 1.3": {"batch 1": 7}}
    assert "base penalty 1.3: 7 at batch 1." in engine_check_sentence(check)
    del check["same_candidates_of_32"]
    assert "candidates" not in engine_check_sentence(check)


def test_the_cpu_serving_record_feeds_its_section():
    """benchmarks/cpu_serving.json: a row per method and path, the 2x target computed from the default paths, and a
    path the record did not time named with its reason."""
    from supportagent.benchmark_tables import cpu_serving_tables

    paths = {"default: 16 candidates, reranked (sampled in float32)": {"p50_ms": 900.0, "p95_ms": 1000.0, "x_llama_cpp": 1.8},
             "llama.cpp (base GGUF)": {"p50_ms": 500.0, "p95_ms": 600.0, "x_llama_cpp": 1.0}}
    record = {"machine": {"cores": 2, "cpu": "CPU X", "avx512_bf16": False}, "command": "c", "date": "d", "commit": "abc1234",
              "versions": {"llama-cpp-python": "0.3.36"}, "what": "w", "n_prompts": 32,
              "results": {"qlora": {"mean_prompt_tokens": 200.0, "mean_new_tokens": 18.0, "paths": paths}},
              "not_timed": {"bfloat16": "this CPU lacks fast bf16"}}
    text = "\n".join(cpu_serving_tables(record))
    assert "(2 cores, CPU X, AVX512-BF16: False;" in text and "| qlora | llama.cpp (base GGUF) | 500.00 |" in text
    assert "Not timed: bfloat16, because this CPU lacks fast bf16." in text and "x llama.cpp's: met (qlora 1.8x)" in text
    paths["default: 16 candidates, reranked (sampled in float32)"]["x_llama_cpp"] = 2.5
    assert "**not met** (qlora 2.5x)" in "\n".join(cpu_serving_tables(record))
    record["earlier_runs"] = [{"what": "the former reranker", "commit": "def5678", "machine": {"cpu": "CPU Y", "avx512_bf16": True},
                               "results": {"qlora": {"paths": {"bfloat16": {"p50_ms": 574.7}}}}}]
    assert ("Earlier, the former reranker (commit def5678, CPU Y, AVX512-BF16: True), p50 ms: qlora: bfloat16 575."
            in "\n".join(cpu_serving_tables(record)))


def test_the_serve_load_record_feeds_its_section():
    """benchmarks/serve_load.py's record: the CPU's AVX512-BF16 flag in the header, the >= 3x target computed from
    the levels, and each earlier run named by its commit once."""
    from supportagent.benchmark_tables import serve_tables

    level = lambda c, rps: {"concurrency": c, "requests": 48, "replies_per_s": rps, "p50_ms": 1000.0, "p95_ms": 2000.0,
                            "status": {"200": 48}}
    record = {"what": "POST", "command": "python benchmarks/serve_load.py", "date": "2026-01-01", "commit": "abc1234",
              "machine": {"cpu": "CPU X", "cores": 2, "avx512_bf16": False}, "max_batch": 16,
              "levels": [level(1, 0.1), level(16, 0.35)], "speedup": {"1": 1.0, "16": 3.5},
              "bad_requests": {"422": 6}, "server_errors": 0,
              "earlier_runs": [{"what": "before x", "commit": "def5678", "date": "2025-12-31",
                                "levels": [level(1, 0.2)]}]}
    text = "\n".join(serve_tables(record, "serve_load.json"))
    assert "under load on 2 cores, CPU X, AVX512-BF16: False" in text and "(commit abc1234)" in text
    assert "3.5x the replies/s of one request at a time (target >= 3x: met)" in text
    assert "Earlier, before x (2025-12-31, commit def5678): p50 1,000 ms" in text
    assert "health check" not in text and "started in" not in text  # no startup recorded (--url: a running server)
    assert "first request" not in text  # nor the first request's wait (records before it was kept)
    record["speedup"]["16"] = 2.43
    assert "target >= 3x: **not met**" in "\n".join(serve_tables(record, "serve_load.json"))
    record["startup_seconds"], record["earlier_runs"][0]["startup_seconds"] = 89.46, 207.6
    text = "\n".join(serve_tables(record, "serve_load.json"))
    assert "answered its health check 89.5 s after it was launched." in text
    assert "(2025-12-31, commit def5678, started in 207.6 s): p50" in text
    record["first_request_ms"] = 1071.4
    assert "Its first request took 1,071 ms" in "\n".join(serve_tables(record, "serve_load.json"))
    # a run of another setting kept beside the headline one comes first, as such, with its first request
    record["other_runs"] = [{"what": "greedy replies alone", "commit": "aaa1111", "date": "2026-01-02",
                             "first_request_ms": 128.3, "levels": [level(1, 14.5), level(16, 53.4)],
                             "speedup": {"1": 1.0, "16": 3.68}}]
    text = "\n".join(serve_tables(record, "serve_load.json"))
    assert "Also, greedy replies alone (2026-01-02, commit aaa1111): p50 1,000 ms one request at a time, first " \
           "request 128 ms, 14.5 replies/s at concurrency 1, 53.4 replies/s at concurrency 16 (3.68x one request at " \
           "a time at 16)." in text
    assert text.index("Also, greedy") < text.index("Earlier, before x")


def test_the_cpu_dtype_record_names_every_cpu_it_keeps():
    """benchmarks/cpu_dtype.json: one clause per CPU (the record's and each of `other_machines`), told apart by its
    bf16 instructions, with the dtype it trains in where the record says."""
    from supportagent.benchmark_tables import cpu_dtype_sentence

    res = lambda f, b: {"float32": {"matmul_gflops": f, "train_step_s": 2.0}, "bfloat16": {"matmul_gflops": b,
                                                                                            "train_step_s": 1.0}}
    record = {"machine": {"cpu": "AMD EPYC", "cores": 2, "avx512_bf16": False, "amx_bf16": False},
              "chosen_for_training": "float32", "results": res(114.6, 1.2),
              "other_machines": [{"machine": {"cpu": "AMD EPYC", "cores": 2, "avx512_bf16": True, "amx_bf16": False},
                                  "results": res(207.3, 944.6)}]}
    text = cpu_dtype_sentence(record)
    assert "AMD EPYC (2 cores) with AVX2 alone: 114.6 / 1.2 GFLOP/s, a training step 2.00 / 1.00 s, trains in float32;" in text
    assert text.endswith("AMD EPYC (2 cores) with AVX512-BF16: 207.3 / 944.6 GFLOP/s, a training step 2.00 / 1.00 s.")
    record["machine"]["amx_bf16"] = True
    assert "AMD EPYC (2 cores) with AMX:" in cpu_dtype_sentence(record)
