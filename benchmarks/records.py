"""Saving a benchmark record: the commit it ran, and the run it replaces kept under `earlier_runs`."""
from __future__ import annotations

import json
import os
import platform
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def commit() -> str | None:
    """The checkout's short commit (None outside a git checkout or without git, as on a bare GPU machine: the record's
    commit is then filled in where it is committed)."""
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    except OSError:
        return None
    return out.stdout.strip() or None


def save(path: str | Path, record: dict, key: str = "earlier_runs") -> None:
    """Write `record` to `path`. A record already there from another commit or machine moves, with its own earlier
    runs after it, under the new record's `key` (`earlier_runs`; cpu.json's `other_runs`), so a re-run never loses
    the figures it replaces; one from the same commit and machine (a repeated or resumed run) is replaced, its
    earlier runs kept."""
    path = Path(path)
    earlier = []
    if path.exists():
        old = json.loads(path.read_text())
        earlier = old.pop(key, [])
        if (old.get("commit"), old.get("machine")) != (record.get("commit"), record.get("machine")):
            earlier = [old, *earlier]
    path.write_text(json.dumps({**record, **({key: earlier} if earlier else {})}, indent=2) + "\n")


def cpu_facts() -> dict:
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")), "")
    flags = next((line.split(":", 1)[1].split() for line in info.splitlines() if line.startswith("flags")), [])
    import torch

    return {"cpu": model or platform.processor(), "cores": os.cpu_count(),
            "avx512_bf16": "avx512_bf16" in flags, "amx_bf16": "amx_bf16" in flags, "avx2": "avx2" in flags,
            "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
            "python": platform.python_version(), "torch": torch.__version__, "torch_threads": torch.get_num_threads()}
