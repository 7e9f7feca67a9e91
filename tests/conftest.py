"""Shared pytest fixtures for the ltzoo test suite."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# =====================================================================================================================
# Local Hugging Face Hub: `local_hub` fixture (server in tests/hubserver.py)
# =====================================================================================================================

sys.path.insert(0, str(Path(__file__).resolve().parent))  # make `import hubserver` work under any import mode

from hubserver import LocalHub, patch_huggingface_hub  # noqa: E402

#: Token the ``local_hub`` fixture puts in ``HF_TOKEN``; its ``LocalHub`` requires it for writes.
LOCAL_HUB_TOKEN = "hf_localhub_test_token"


@pytest.fixture(scope="module")
def hf_home(tmp_path_factory) -> Path:
    """An empty Hugging Face home for a module's recipe runs (recipe_env keeps them offline)."""
    return tmp_path_factory.mktemp("hf_home")


@pytest.fixture
def inproc(monkeypatch, hf_home, fresh_accelerate):
    """In-process runs see the same environment as the launched ones (one thread: OMP_NUM_THREADS is read at import)."""
    import torch
    from launching import recipe_env

    for k, v in recipe_env(hf_home).items():
        if k != "PYTHONPATH":
            monkeypatch.setenv(k, v)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def fresh_accelerate():
    """accelerate keeps one global state per process: every test starts and leaves with none, so that the suite
    passes in any selection and order (a test that made an Accelerator in bf16 never decides the next one's)."""
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()
    yield
    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()


@pytest.fixture
def local_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalHub]:
    """A running :class:`hubserver.LocalHub` that ``huggingface_hub`` and ``timm`` talk to, for one test.

    Sets ``HF_ENDPOINT``, ``HF_HOME`` (``tmp_path / "hf_home"``: the cache starts empty), ``HF_TOKEN``
    (:data:`LOCAL_HUB_TOKEN`) and ``HF_HUB_DISABLE_TELEMETRY=1`` in the environment (subprocesses inherit them)
    and patches the copies ``huggingface_hub`` made at import time (``constants.ENDPOINT``, cache paths, the
    module-level ``HfApi``...).  Repos are stored under ``tmp_path / "hub_storage"``.  All is undone afterwards.
    """
    with LocalHub(tmp_path / "hub_storage", token=LOCAL_HUB_TOKEN) as hub:
        patch_huggingface_hub(monkeypatch, hub.endpoint, tmp_path / "hf_home", LOCAL_HUB_TOKEN)
        yield hub


# ===================================================================================== end of Local Hugging Face Hub
