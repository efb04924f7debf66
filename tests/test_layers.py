"""The package's layers, lowest first: each subpackage imports only from its own layer and the layers below it, so
a newcomer reads the architecture from the tree and a change low down is never shaped by code above it."""
import ast
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "supportagent"
# the foundations every layer may use (the params schema, the paths, errors, the device), then the layers, then the
# command line, which wires them together
FOUNDATIONS = {"config", "errors", "paths", "runtime"}
LAYERS = ["data", "model", "inference", "evaluation", "reporting", "app"]
ENTRY = {"__main__"}


def rank(dotted: str) -> int:
    """A module's place: 0 for the foundations (and the package itself), then each layer, the entry point last."""
    parts = dotted.split(".")[1:]
    if not parts or parts[0] in FOUNDATIONS or parts[0] == "__init__":
        return 0
    if parts[0] in ENTRY:
        return len(LAYERS) + 1
    return LAYERS.index(parts[0]) + 1


def modules(src: Path) -> dict[str, Path]:
    return {".".join(["supportagent", *f.relative_to(src).with_suffix("").parts]).removesuffix(".__init__"): f
            for f in src.rglob("*.py")}


def imported(name: str, path: Path, src: Path) -> set[str]:
    """The package's modules (or packages) a module imports, lazy imports inside functions included."""
    package = ["supportagent", *path.parent.relative_to(src).parts]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            found.add(".".join(package[: len(package) - node.level + 1] + ([node.module] if node.module else [])))
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "supportagent":
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "supportagent"}
    return found


def upward_imports(src: Path) -> list[str]:
    """Every import of a module from a layer above its own: "importer -> imported"."""
    return sorted(f"{name} -> {target}" for name, path in modules(src).items()
                  for target in imported(name, path, src) if rank(target) > rank(name))


def test_every_module_sits_in_a_layer_or_the_foundations():
    top = {f.stem for f in SRC.glob("*.py")} - {"__init__"}
    assert top == FOUNDATIONS | ENTRY, f"modules outside the layers: {sorted(top - FOUNDATIONS - ENTRY)}"
    assert {d.name for d in SRC.iterdir() if d.is_dir() and (d / "__init__.py").exists()} == set(LAYERS)


def test_no_module_imports_from_a_layer_above_its_own():
    assert upward_imports(SRC) == []


def test_an_import_up_a_layer_is_found(tmp_path):
    src = tmp_path / "supportagent"
    shutil.copytree(SRC, src, ignore=shutil.ignore_patterns("__pycache__", "static"))
    checks = src / "inference" / "checks.py"
    checks.write_text(checks.read_text() + "\n\ndef later():\n    from ..evaluation.metrics import QUALITY\n")
    (src / "data" / "late.py").write_text("from supportagent.app import server\n")
    assert upward_imports(src) == ["supportagent.data.late -> supportagent.app",
                                   "supportagent.inference.checks -> supportagent.evaluation.metrics"]
