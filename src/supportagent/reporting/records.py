"""Benchmark records: one schema for every benchmark, one file per run.

A run of `benchmarks/<name>.py` writes `benchmarks/results/<name>/<machine>-<commit>[-<label>].json`: the command,
commit, date, machine and package versions, the overrides it ran with, its figures as one flat mapping, its targets
(measured against wanted) and a short note. Git keeps the history: a later run is a new file, a repeat on the same
machine and commit replaces its own. `reports/benchmarks.md` is rendered from these files (report.py)."""
from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

from pydantic import BaseModel, ConfigDict, field_validator

Scalar = float | int | bool | str | None
RESULTS = Path("benchmarks/results")
META = ("command", "commit", "date", "machine", "versions", "overrides", "targets", "notes")  # a result's fields


class Target(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str
    measured: Scalar
    wanted: str  # "<= 1200", ">= 0.9", or a value to equal
    met: bool


class Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    benchmark: str
    command: str
    commit: str
    date: str
    machine: dict[str, Scalar]
    versions: dict[str, str | None] = {}
    overrides: dict[str, Scalar] = {}
    metrics: dict[str, Scalar]
    targets: list[Target] = []
    notes: str = ""

    @field_validator("command", "commit", "date")
    @classmethod
    def _named(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("must not be empty")
        return v

    @field_validator("machine", "metrics")
    @classmethod
    def _not_empty(cls, v: dict) -> dict:
        if not v:
            raise ValueError("must not be empty")
        return v


def flatten(tree, prefix: str = "") -> dict[str, Scalar]:
    """Nested dicts and lists as one mapping of dotted keys (`stage_seconds.train@qlora`, `runs.0.rouge_l`)."""
    if isinstance(tree, dict):
        items = tree.items()
    elif isinstance(tree, (list, tuple)):
        items = enumerate(tree)
    else:
        return {prefix: tree}
    out: dict[str, Scalar] = {}
    for key, value in items:
        out.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


def unflatten(flat: dict[str, Scalar]) -> dict:
    """`flatten`'s inverse, lists as dicts keyed by their index."""
    out: dict = {}
    for key, value in flat.items():
        *parents, leaf = key.split(".")
        node = out
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return out


def target(name: str, measured: Scalar, wanted: str | float) -> dict:
    """A target row; `wanted` as "<= x" / ">= x" compares numbers, anything else must be equal."""
    wanted = str(wanted)
    if wanted[:2] in ("<=", ">=") and isinstance(measured, (int, float)):
        bound = float(wanted[2:])
        met = measured <= bound if wanted.startswith("<=") else measured >= bound
    else:
        met = str(measured) == wanted
    return {"name": name, "measured": measured, "wanted": wanted, "met": bool(met)}


def commit() -> str | None:
    """The checkout's short commit; None outside a git checkout (a bare GPU machine): pass `commit=` then."""
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                             cwd=Path(__file__).resolve().parent)
    except OSError:
        return None
    return out.stdout.strip() or None


def cpu_facts() -> dict:
    import torch

    from ..runtime import cpu_flags

    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    fields: dict[str, str] = {}  # the first processor's
    for line in info.splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    flags = cpu_flags(info or None)[1]
    # family/model tell apart generations a virtual machine names alike ("AMD EPYC": 25 is Zen 3/4, 26 Zen 5)
    family = "/".join(fields[k] for k in ("cpu family", "model") if k in fields) or None

    return {"cpu": fields.get("model name") or platform.processor(), "cpu_family_model": family,
            "cores": os.cpu_count(),
            "avx512_bf16": "avx512_bf16" in flags, "amx_bf16": "amx_bf16" in flags, "avx2": "avx2" in flags,
            "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
            "python": platform.python_version(), "torch": torch.__version__, "torch_threads": torch.get_num_threads()}


def gpu_facts() -> dict:
    import torch

    facts = {"python": platform.python_version(), "cuda_available": torch.cuda.is_available()}
    if torch.cuda.is_available():
        facts.update(gpu=torch.cuda.get_device_name(0), gpus=torch.cuda.device_count(), cuda=torch.version.cuda,
                     gpu_memory_gib=round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1))
        try:
            out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                 capture_output=True, text=True).stdout
            facts["driver"] = next(iter(out.split()), None)  # one line per GPU: the first
        except OSError:
            pass
    return facts


def machine_facts() -> dict:
    """The GPU's facts where there is one, else the CPU's."""
    import torch

    return gpu_facts() if torch.cuda.is_available() else cpu_facts()


def versions(names=("torch", "transformers", "peft", "bitsandbytes", "accelerate", "sentence-transformers")) -> dict:
    import importlib.metadata as md

    out = {}
    for name in names:
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = None
    return out


def machine_name(machine: dict) -> str:
    """A file-name slug: `nvidia-h200`, `2x-nvidia-h200`, `amd-epyc-2c-avx512bf16`, `intel-xeon-2c-amx`."""
    if machine.get("gpu"):
        name, count = str(machine["gpu"]), int(machine.get("gpus") or 1)
        slug = f"{count}x-{name}" if count > 1 else name
    elif machine.get("cpu"):
        isa = "amx" if machine.get("amx_bf16") else "avx512bf16" if machine.get("avx512_bf16") else \
            "avx2" if machine.get("avx2") else ""
        slug = "-".join(
            str(x) for x in (machine["cpu"], f"{machine['cores']}c" if machine.get("cores") else "", isa) if x
        )
    else:
        slug = "unknown-machine"
    return re.sub(r"[^a-z0-9]+", "-", slug.lower()).strip("-")


def portable(arg: str, root: Path | None = None) -> str:
    """`arg` as a record keeps it on any machine: an absolute path inside the project (`root`, default the working
    folder) relative to it, one elsewhere as `<path>/` and its file name (`--opt=/abs/x` alike)."""
    opt, eq, value = arg.partition("=") if arg.startswith("-") else ("", "", arg)
    if not value.startswith("/"):
        return arg
    path = Path(value)
    try:
        value = str(path.resolve().relative_to((root or Path.cwd()).resolve()))
    except ValueError:
        value = f"<path>/{path.name}"
    return f"{opt}{eq}{value}"


def invocation() -> str:
    """This process's command line as typed from the project's root, with no path of this machine in it."""
    return " ".join(["python", *(portable(a) for a in sys.argv)])


def make(benchmark: str, result: dict, **meta) -> Record:
    """A record from a script's nested result: the keys in META (or passed as keywords) are the record's fields,
    everything else is flattened into its metrics."""
    result = {**result, **meta}
    if unknown := set(meta) - set(META):
        raise TypeError(f"not a record field: {sorted(unknown)} (fields: {', '.join(META)})")
    notes = result.pop("notes", "") or ""
    overrides = result.pop("overrides", None) or {}
    return Record(
        benchmark=benchmark,
        command=result.pop("command", None) or invocation(),
        commit=result.pop("commit", None) or commit() or "unknown",
        date=result.pop("date", None) or time.strftime("%Y-%m-%d"),
        machine=result.pop("machine", None) or machine_facts(),
        versions=result.pop("versions", None) or {},
        overrides=flatten(overrides) if isinstance(overrides, dict) else {"file": overrides},
        targets=[Target(**t) for t in result.pop("targets", None) or []],
        notes=notes,
        metrics=flatten(result),
    )


def path_for(record: Record, label: str = "", root: Path | str = RESULTS) -> Path:
    name = "-".join(x for x in (machine_name(record.machine), record.commit, label) if x)
    return Path(root) / record.benchmark / f"{re.sub(r'[^A-Za-z0-9._-]+', '-', name)}.json"


def _root(root: Path | str | None) -> Path:
    return Path(root) if root else Path(__file__).resolve().parents[3] / RESULTS


def existing(benchmark: str, label: str = "", root: Path | str | None = None, **meta) -> Record | None:
    """The record this machine and checkout saved for `benchmark` (and `label`), if any: how a stopped run resumes."""
    probe = make(benchmark, {"probe": 0}, **meta)
    path = path_for(probe, label, _root(root))
    return Record.model_validate_json(path.read_text()) if path.exists() else None


def save(benchmark: str, result: dict, label: str = "", root: Path | str | None = None, **meta) -> Path:
    """Write one run's record (see `make`) and return its path; a run of the same machine, commit and label is
    replaced, any other kept."""
    record = make(benchmark, result, **meta)
    path = path_for(record, label, _root(root))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record.model_dump(), indent=2, ensure_ascii=False) + "\n")
    print(f"record: {path}", flush=True)
    return path


def load_all(root: Path | str = RESULTS) -> list[Record]:
    """Every record under `root`, validated (a file that does not fit the schema fails by name); of one benchmark,
    a file without a label before those with one."""
    out = []
    for path in sorted(Path(root).glob("*/*.json"), key=lambda p: (p.parent.name, len(p.stem), p.stem)):
        try:
            out.append(Record.model_validate_json(path.read_text()))
        except ValueError as e:
            raise ValueError(f"{path} is not a benchmark record: {e}") from e
    return out
