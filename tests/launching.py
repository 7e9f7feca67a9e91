"""Helpers for tests that run recipes under `accelerate launch` in a subprocess."""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def recipe_env(hf_home: Path) -> dict:
    """The environment of a launched recipe: CPU, one thread, an empty offline Hugging Face home."""
    env = {
        **os.environ,
        "ACCELERATE_USE_CPU": "true",
        "OMP_NUM_THREADS": "1",
        "HF_HOME": str(hf_home),
        "HF_HUB_OFFLINE": "1",
        "MPLBACKEND": "Agg",
        "PYTHONUNBUFFERED": "1",
    }
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def free_port() -> int:
    """A free TCP port on loopback, for a multi-process run's rendezvous."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch_cmd(recipe: Path, args: list[str], processes: int = 1) -> list[str]:
    """`accelerate launch` of a recipe on the CPU: one process, or several over gloo on a free port."""
    cmd = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
    ]
    if processes == 1:
        cmd += ["--num_processes", "1", "--cpu"]
    else:
        cmd += ["--multi_gpu", "--num_processes", str(processes), "--main_process_port", str(free_port())]
    return cmd + [str(recipe), *args]
