"""ltzoo installed as a user installs it: built as a wheel and installed (not editable) into a fresh virtual
environment, then run from a directory outside the checkout, with nothing of the source tree on the path.

- ``python -m ltzoo --help`` lists every command;
- ``accelerate launch -m ltzoo.recipes.btm --help`` runs the recipe module (no ``recipes/`` folder needed);
- the packaged configs are there (``ltzoo configs``);
- ``ltzoo card`` on a zoo entry gives exactly its ``hub_cards/`` file.
"""

from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ENTRY = "resnet20-ce-fmnistlt"


def run(cmd: list, cwd: Path, env: dict, timeout: int = 300) -> str:
    proc = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{cmd} failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
    return proc.stdout


@pytest.fixture(scope="module")
def venv(tmp_path_factory) -> dict:
    """A venv (with the system's packages: torch, timm, ...) holding a plain, non-editable install of ltzoo."""
    root = tmp_path_factory.mktemp("install")
    src = root / "src"  # a copy: pip builds in the source folder, which must not be the checkout
    src.mkdir()
    for name in ("setup.cfg", "pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    shutil.copytree(ROOT / "ltzoo", src / "ltzoo", ignore=shutil.ignore_patterns("__pycache__"))
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env.update(
        HF_HOME=str(root / "hf"),
        HF_HUB_OFFLINE="1",
        MPLBACKEND="Agg",
        ACCELERATE_USE_CPU="true",
        PIP_DISABLE_PIP_VERSION_CHECK="1",
        PIP_NO_INPUT="1",
    )
    # the wheel is built by this interpreter's setuptools (a fresh venv's own may predate bdist_wheel)
    run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "-w",
            root / "dist",
            src,
        ],
        root,
        env,
    )
    wheel = next((root / "dist").glob("ltzoo-*.whl"))
    run([sys.executable, "-m", "venv", "--system-site-packages", root / "venv"], root, env)
    bin_dir = root / "venv" / "bin"
    # --system-site-packages sees the base interpreter's packages; when this interpreter is itself a venv
    # (where torch is), a .pth file lets the new venv see this one's site-packages as well
    new_site = run([bin_dir / "python", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], root, env)
    (Path(new_site.strip()) / "outer_site.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    run([bin_dir / "python", "-m", "pip", "install", "-q", "--no-deps", "--no-index", wheel], root, env)
    elsewhere = root / "elsewhere"
    elsewhere.mkdir()
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    return {"root": root, "bin": bin_dir, "cwd": elsewhere, "env": env}


def test_installed_package_runs_outside_the_checkout(venv):
    py, cwd, env = venv["bin"] / "python", venv["cwd"], venv["env"]
    where = run([py, "-c", "import ltzoo, ltzoo.recipes.btm as b; print(ltzoo.__file__); print(b.__file__)"], cwd, env)
    assert all(Path(p).is_relative_to(venv["root"] / "venv") for p in where.split()), where  # not the checkout's

    usage = run([py, "-m", "ltzoo", "--help"], cwd, env)
    for command in ("data", "eval", "configs", "card", "push", "zoo"):
        assert f"    {command} " in usage, usage
    assert "fmnist_lt/btm" in run([venv["bin"] / "ltzoo", "configs"], cwd, env)

    launch = [
        py,
        "-m",
        "accelerate.commands.launch",
        "--cpu",
        "--num_processes",
        "1",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
    ]
    help_text = run([*launch, "-m", "ltzoo.recipes.btm", "--help"], cwd, env)
    assert help_text.startswith("usage: btm.py") and "--stage1-loss" in help_text and "--ensemble" in help_text


def test_installed_card_of_a_zoo_entry_matches_hub_cards(venv):
    run_dir = shutil.copytree(ROOT / "zoo" / ENTRY, venv["root"] / ENTRY)
    cards = venv["root"] / "cards"
    run(
        [
            venv["bin"] / "ltzoo",
            "card",
            run_dir,
            "--name",
            ENTRY,
            "--repo-id",
            f"ltzoo/{ENTRY}",
            "--output",
            venv["root"] / "README.md",
            "--cards-dir",
            cards,
        ],
        venv["cwd"],
        venv["env"],
    )
    card = (cards / f"{ENTRY}.md").read_text()
    published = (ROOT / "hub_cards" / f"{ENTRY}.md").read_text()
    assert "accelerate launch -m ltzoo.recipes.pretrain \\\n    --dataset fmnist_lt" in card
    assert card == published
