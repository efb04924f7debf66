"""dvc.yaml's stage graph (declared code, what each stage needs) and the stage runner of
benchmarks/gpu_pipeline.py that follows it."""
import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import gpu_pipeline  # noqa: E402
from supportagent.config import BASELINES, METHODS  # noqa: E402


def test_stage_graph_follows_dvc_yaml():
    g = gpu_pipeline.stage_graph()
    lock = __import__("yaml").safe_load((ROOT / "dvc.lock").read_text())["stages"]
    assert set(lock) == set(g)  # the stage names DVC records, and no entry left from a renamed stage
    assert g["train@qlora"]["cmd"].startswith("python stages/train.py qlora --splits data/processed ")
    assert "--out models/qlora " in g["train@qlora"]["cmd"]  # dvc.yaml's paths, interpolated as DVC does
    assert set(g["train@qlora"]["needs"]) == {"split", "index", "base"}
    assert g["evaluate@qlora"]["needs"] == ["split", "index", "base", "train@qlora"]
    assert g["baseline@retrieval"]["needs"] == ["split", "index", "base"]  # reads the base's manifest
    evaluations = [f"baseline@{s}" for s in BASELINES] + [f"evaluate@{m}" for m in METHODS]
    assert all("base" in g[e]["needs"] for e in evaluations)  # predictions name the base they were made with
    assert {*evaluations, *(f"train@{m}" for m in METHODS)} <= set(g["compare"]["needs"])  # through its folders
    assert g["base"]["needs"] == []


SRC = ROOT / "src" / "supportagent"
# config.py is the params schema (what it changes arrives through the params each stage declares);
# errors.py only defines exception classes: neither can change a stage's outputs
EXEMPT = {"config", "errors"}
PACKAGE_UNITS = ("model/methods",)  # a subpackage whose modules are found at run time: one unit, one dep


def _unit(dotted: str) -> str | None:
    """The unit of the package a module `supportagent.x.y` belongs to (`data/rules`, or `model/methods` for any module
    of that subpackage); None for a layer's package itself, which holds no code."""
    path = "/".join(dotted.split(".")[1:])
    for unit in PACKAGE_UNITS:
        if path == unit or path.startswith(unit + "/"):
            return unit
    return path if (SRC / f"{path}.py").exists() else None


def _files(unit: str) -> list[Path]:
    return [SRC / f"{unit}.py"] if (SRC / f"{unit}.py").exists() else sorted((SRC / unit).glob("*.py"))


def _imports(module: Path) -> set[str]:
    """The package's units that `module` imports: relative imports from inside the package, and `supportagent.x`
    from outside; `from .. import a` names modules, `from ..a import b` may too."""
    inside = SRC in module.parents
    package = ["supportagent", *module.parent.relative_to(SRC).parts] if inside else []
    found = set()
    for node in ast.walk(ast.parse(module.read_text())):
        if not isinstance(node, ast.ImportFrom):
            continue
        if node.level:
            base = package[: len(package) - node.level + 1] + (node.module.split(".") if node.module else [])
        elif (node.module or "").split(".")[0] == "supportagent":
            base = node.module.split(".")
        else:
            continue
        for name in [".".join(base)] + [".".join([*base, a.name]) for a in node.names]:
            if (unit := _unit(name)) is not None:
                found.add(unit)
    return found


def stage_code(script: Path) -> set[str]:
    """Every package unit a stage script runs: its imports (and its helper's), followed transitively."""
    todo, seen = _imports(script) | _imports(script.parent / "_common.py"), set()
    while todo:
        m = todo.pop()
        if m not in seen:
            seen.add(m)
            todo |= {i for f in _files(m) for i in _imports(f)}
    return seen - EXEMPT


def test_every_stage_declares_exactly_the_code_it_runs():
    """Starting at the stage script: a module it runs but does not declare would not rerun the stage when
    it changes; a module declared but never run would rerun it for nothing (e.g. serving code retraining)."""
    for name, spec in gpu_pipeline.stage_graph().items():
        declared = {d.removeprefix("src/supportagent/").removesuffix(".py") for d in spec["deps"]
                    if d.startswith("src/supportagent/")}
        run = stage_code(ROOT / spec["cmd"].split()[1])
        assert run <= declared, f"{name} runs {sorted(run - declared)} without declaring it in dvc.yaml"
        assert declared <= run, f"{name} declares {sorted(declared - run)}, which its script never imports"


def test_the_stage_code_finder_sees_imports_through_other_modules(tmp_path):
    assert "model/bases" in stage_code(ROOT / "stages/compare.py")  # compare -> predictions -> bases
    assert "model/models" not in stage_code(ROOT / "stages/compare.py")  # reading predictions loads no model
    assert "model/training" not in stage_code(ROOT / "stages/evaluate.py")
    assert "model/methods" in stage_code(ROOT / "stages/train.py")  # a subpackage is one unit, one dep
    assert "data/overlap" in stage_code(ROOT / "stages/evaluate.py")  # evaluate -> checks -> overlap, in a layer below


def test_concurrent_runner_waits_for_what_a_stage_needs(tmp_path, monkeypatch):
    script = tmp_path / "stage.py"
    script.write_text("import sys, time, pathlib\n"
                      "p = pathlib.Path('events.txt')\n"
                      "p.open('a').write(f'start {sys.argv[1]} {time.time()}\\n')\n"
                      "time.sleep(float(sys.argv[2]))\n"
                      "p.open('a').write(f'end {sys.argv[1]} {time.time()}\\n')\n")
    stages = {"a": {"cmd": "python stage.py a 1.5", "needs": []},
              "b": {"cmd": "python stage.py b 1.5", "needs": []},
              "c": {"cmd": "python stage.py c 0.1", "needs": ["a"]}}
    monkeypatch.setattr(gpu_pipeline, "STAGES", stages)
    monkeypatch.setattr(gpu_pipeline, "ROOT", tmp_path)
    times = gpu_pipeline.run_stages(["a", "b", "c"], tmp_path, {}, jobs=2)
    assert set(times) == {"a", "b", "c"}
    events = {
        (kind, name): float(t)
        for kind, name, t in (line.split() for line in (tmp_path / "events.txt").read_text().splitlines())
    }
    assert abs(events["start", "a"] - events["start", "b"]) < 1.0  # side by side (one after the other: >= 1.5)
    assert events["start", "c"] >= events["end", "a"]  # waited for what it needs


def test_a_workdir_links_the_project_inputs_and_never_a_folder_a_stage_writes(tmp_path):
    gpu_pipeline.link_inputs(tmp_path)
    links = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_symlink())
    assert "reports/review/ratings.csv" in links  # the raw csv too, where `dvc pull` has brought it
    assert ("data/raw/twcs.csv" in links) == (ROOT / "data/raw/twcs.csv").exists()
    assert any(link.startswith("data/labels/") for link in links)
    # compare reads metrics/eval, dvclive and the predictions as folders; a link there would let the workdir's
    # stages write over the project's own outputs
    made = {out for spec in gpu_pipeline.STAGES.values() for out in spec["outs"]}
    assert not any(gpu_pipeline.overlaps(link, out) for link in links for out in made)


def test_collected_predictions_keep_what_a_review_reads_without_the_candidates(tmp_path):
    """`--collect` commits the served and retrieval predictions for a blind review: every field but the sampled
    candidates, which would make the file too large for git."""
    import json

    src, dst = tmp_path / "qlora.jsonl", tmp_path / "out.jsonl"
    rows = [{"_base": {"base": "b"}}, {"pair_id": 1, "served": "Hi", "path": "passed", "flags": [],
                                       "candidates": ["Hi", "Hello"] * 40}]
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    gpu_pipeline.reviewable(src, dst)
    got = [json.loads(line) for line in dst.read_text().splitlines()]
    assert got == [rows[0], {k: v for k, v in rows[1].items() if k != "candidates"}]
