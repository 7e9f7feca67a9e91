"""What a run ran on and from which code: the machine (CPU model and flags, native bf16, GPU), peak memory, and
the git commit of the source tree. Results files, benchmarks and cards read them from here."""

from __future__ import annotations

import os
import platform
import resource
import subprocess
from functools import lru_cache
from pathlib import Path

import torch

BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")  # /proc/cpuinfo flags of CPUs with native bf16 dot products
REPORTED_CPU_FLAGS = ("amx_bf16", "amx_tile", "avx512_bf16", "avx512_fp16", "avx512f", "avx2")


@lru_cache(maxsize=1)
def cpu_info() -> dict:
    """The CPU's model name and flags (Linux /proc/cpuinfo; torch's own probes elsewhere)."""
    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                fields.setdefault(key.strip(), value.strip())
        flags = set(fields.get("flags", "").split())
    except OSError:  # not Linux: ask torch (x86 only)
        probes = {
            "avx512_bf16": "_is_avx512_bf16_supported",
            "amx_tile": "_is_amx_tile_supported",
            "avx512f": "_is_avx512_supported",
            "avx2": "_is_avx2_supported",
        }
        flags = {flag for flag, fn in probes.items() if getattr(torch.cpu, fn, lambda: False)()}
    model = fields.get("model name") or platform.processor() or platform.machine()
    return {"model": model, "flags": sorted(flags)}


def bf16_is_fast(device: torch.device | str) -> bool:
    """True where bf16 autocast is native, not emulated: CUDA compute capability >= 8.0, or a CPU with
    AMX-BF16 or AVX512-BF16."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False)
    if device.type == "cpu":
        flags = set(cpu_info()["flags"])
        return bool(flags & set(BF16_CPU_FLAGS)) or (not flags and torch.cpu._is_avx512_bf16_supported())
    return False


def hardware_summary(device: torch.device | str | None = None) -> dict:
    """What a benchmark ran on: CPU model and the flags that matter here, threads, GPU name, versions."""
    cpu = cpu_info()
    out = {
        "cpu": cpu["model"],
        "cpu_flags": [f for f in REPORTED_CPU_FLAGS if f in cpu["flags"]],
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "gpu": None,
    }
    if torch.cuda.is_available():
        out["gpu"] = f"{torch.cuda.device_count()}x {torch.cuda.get_device_name(0)}"
    out["bf16_native"] = bf16_is_fast(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    return out


def peak_memory_mb() -> float:
    """Peak memory of this process: GPU memory allocated where there is a GPU, else peak RSS."""
    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def hardware() -> str:
    """What the run ran on, for results files."""
    if torch.cuda.is_available():
        return f"{torch.cuda.device_count()}x {torch.cuda.get_device_name(0)}"
    return f"CPU ({platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} threads)"


#: What a run's code is: a change to these (tracked files, against HEAD) makes its commit "-dirty".
#: Edits elsewhere (README, benchmark results a grid writes between its runs) do not change what trains.
CODE_PATHS = ("ltzoo", "recipes", "pyproject.toml")


def git_commit(root: Path | None = None) -> str | None:
    """The git commit of the ltzoo source tree, with '-dirty' when its code (`CODE_PATHS`) has uncommitted
    changes; None outside a git checkout (an installed package)."""
    root = root or Path(__file__).resolve().parents[2]
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", *CODE_PATHS],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return None
