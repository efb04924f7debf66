"""Code that states what and why: ruff's line length (120) and pyflakes checks over the code, and no measured
figure in a docstring or comment of src/ (a figure lives in a record under benchmarks/results/, which can say when
and where it was measured; a docstring cannot, and goes stale silently)."""
import re
import subprocess
import sys
from pathlib import Path

from conftest import ROOT

# a number with a unit of measure or a speed-up: "2.5x faster", "450 ms", "11.2 s", "2,903 MB", "37%"
MEASURED = re.compile(r"\b\d[\d,.]*\s?(?:x(?![-\w])|ms\b|s\b|seconds\b|MB\b|GB\b|GiB\b|%(?! (?:confidence )?interval))")


def test_ruff_passes():
    ruff = Path(sys.executable).parent / "ruff"
    out = subprocess.run([str(ruff), "check", "--no-cache", "src", "stages", "benchmarks", "tests"], cwd=ROOT,
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout[-3000:]


def prose(source: str) -> list[str]:
    """The docstrings and comments of a module, line by line."""
    lines, inside = [], False
    for line in source.splitlines():
        quotes = line.count('"""')
        if inside or quotes:
            lines.append(line)
        if quotes % 2:
            inside = not inside
        elif not inside and "#" in line:
            lines.append(line[line.index("#"):])
    return lines


def test_no_measured_figure_in_a_docstring_or_comment():
    found = [f"{path.name}: {line.strip()}" for path in sorted((ROOT / "src/supportagent").glob("*.py"))
             for line in prose(path.read_text()) if MEASURED.search(line)]
    assert not found, "\n".join(found)
