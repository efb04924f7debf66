"""A method is one place: registering a new one (here plain LoRA on the 16-bit base) takes its schema entry, its
module under methods/ and its params, and nothing else: the CLI, the schema, the training code and dvc.yaml's
stages all pick it up."""
import json
import shutil
import subprocess
import sys

from supportagent.config import METHODS
from supportagent.model.methods import registry

from conftest import ROOT

LORA_MODULE = '''"""LoRA on the frozen 16-bit base (the QLoRA adapter without the 4-bit quantisation)."""
from . import Method
from .qlora import add_lora

METHOD = Method("lora", add=add_lora)
'''
CHECK = '''
import json, sys
from supportagent.config import METHODS, SYSTEMS, load_params
from supportagent.model.adapters import build_model, count_params
from supportagent.model.methods import get
sys.path.insert(0, sys.argv[2])
from gpu_pipeline import stage_graph
from pathlib import Path

p = load_params("params.yaml")
model = build_model("lora", sys.argv[1], p.train.lora)
graph = stage_graph(Path("dvc.yaml"))
print(json.dumps({"methods": list(METHODS), "systems": list(SYSTEMS), "quantized": get("lora").quantized_base,
                  "trainable": count_params(model)[0], "stages": list(graph),
                  "compare_needs": graph["compare"]["needs"]}))
'''


def test_the_schema_and_the_method_modules_name_the_same_methods():
    assert set(registry()) == set(METHODS)


def test_a_new_method_takes_three_files(tmp_path, tiny_base):
    work = tmp_path / "project"
    for d in ("src", "stages"):
        shutil.copytree(ROOT / d, work / d, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for f in ("dvc.yaml", "params.yaml", "policy.yaml"):
        shutil.copy(ROOT / f, work / f)
    git = lambda *a: subprocess.run(["git", *a], cwd=work, check=True, capture_output=True, text=True).stdout  # noqa: E731
    git("init", "-q")
    git("add", "-A")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "as cloned")

    config = work / "src/supportagent/config.py"  # 1: the schema entry
    config.write_text(config.read_text().replace("    prompt_tuning: PromptTuningParams\n",
                                                 "    prompt_tuning: PromptTuningParams\n    lora: QLoraParams\n"))
    (work / "src/supportagent/model/methods/lora.py").write_text(LORA_MODULE)  # 2: the method module
    params = work / "params.yaml"  # 3: its params, the QLoRA block's knobs
    text = params.read_text()
    block = text[text.index("  qlora:\n"):text.index("  prompt_tuning:\n")]
    params.write_text(text.replace("\nevaluate:\n", "\n" + block.replace("  qlora:", "  lora:", 1) + "\nevaluate:\n"))

    touched = git("status", "--porcelain").split("\n")
    assert sorted(line[3:] for line in touched if line) == ["params.yaml", "src/supportagent/config.py",
                                                           "src/supportagent/model/methods/lora.py"]
    out = subprocess.run([sys.executable, "-c", CHECK, str(tiny_base), str(ROOT / "benchmarks")], cwd=work,
                         env={"PYTHONPATH": str(work / "src"), "PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"},
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    found = json.loads(out.stdout.strip().splitlines()[-1])
    assert found["methods"][-1] == "lora" and found["systems"][-1] == "lora"
    assert found["quantized"] is False and found["trainable"] > 0  # LoRA weights on the 16-bit base
    assert {"train@lora", "evaluate@lora"} <= set(found["stages"])  # dvc.yaml's foreach over params' train
    assert {"train@lora", "evaluate@lora"} <= set(found["compare_needs"])
