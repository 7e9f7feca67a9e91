"""Which CPU kernels a run's fp32 bits depend on, for the tests that pin exported weights bit for bit.

oneDNN picks its convolution kernels by the CPU's instruction set (AMX, AVX-512, AVX2), and their summation
order changes the last bits of trained weights: the same fp32 run gives the same metrics on an AMX Xeon
and an AVX-512 EPYC but different weight hashes. A weights hash is recorded under the key of the machine
that made it and compared only on a machine with the same key; elsewhere the metrics are still compared
and a warning names the hash to record.
"""

from __future__ import annotations

import platform
import warnings

import torch

from ltzoo.runfolder.provenance import cpu_info


def kernel_key() -> str:
    """``<arch> <isa> torch <version>``, e.g. ``x86_64 amx torch 2.14.1``."""
    flags = set(cpu_info().get("flags") or ())
    isa = next(
        (name for flag, name in (("amx_tile", "amx"), ("avx512f", "avx512"), ("avx2", "avx2")) if flag in flags),
        "other",
    )
    return f"{platform.machine()} {isa} torch {torch.__version__.split('+')[0]}"


def check_weights_hash(got: str, recorded: dict[str, str], what: str) -> None:
    """Assert ``got`` equals the hash recorded for this machine's kernels; warn where none is recorded."""
    key = kernel_key()
    if key in recorded:
        assert got == recorded[key], f"{what}: exported weights changed on {key}"
    else:
        warnings.warn(
            f"{what}: no weights hash recorded for {key!r} (metrics compared only); this machine gives {got}",
            stacklevel=1,
        )


def recorded_for(recorded: dict, key: str | None = None):
    """The value recorded for this machine's kernel set (or ``key``), and whether it was recorded there; where
    none was, the first recorded, to compare what does not depend on the kernels' last bits."""
    key = key or kernel_key()
    if key in recorded:
        return recorded[key], True
    isa = key.split(" torch ")[0]  # the same kernels under another torch version first, then the first recorded
    same_isa = [k for k in recorded if k.split(" torch ")[0] == isa]
    return recorded[same_isa[0] if same_isa else next(iter(recorded))], False
