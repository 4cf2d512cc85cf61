"""What made a run, for the HDF5 log's attributes (docs/hdf5_schema.md): the commit of the batchlaw
checkout (marked ``-dirty`` when tracked files differ from it), package versions, and the GPU's
dense 16-bit peak FLOP/s for MFU, taken from the shipped system profiles through
``simulator.system.GPU_ALIASES`` (one GPU-name table for the planner and the trainer).

Torch-free at import (``versions`` imports torch when called), so the sbatch script can ask for the
commit: ``python -m batchlaw.plugin.runmeta git-sha``.
"""

from __future__ import annotations

import math
import re
import subprocess
import sys
from pathlib import Path

__all__ = ["device_profile", "git_sha", "peak_flops", "versions"]

_HERE = Path(__file__).resolve().parent


def _git(*args: str) -> subprocess.CompletedProcess | None:
    try:
        return subprocess.run(["git", *args], capture_output=True, text=True, timeout=10, cwd=_HERE)
    except (OSError, subprocess.SubprocessError):
        return None


def git_sha() -> str:
    """The commit of the batchlaw checkout this module runs from, with ``-dirty`` appended when a
    tracked file differs from it (``git describe --dirty``'s mark); 'unknown' outside git (a wheel)."""
    head = _git("rev-parse", "HEAD")
    sha = head.stdout.strip() if head is not None and head.returncode == 0 else ""
    if not sha:
        return "unknown"
    status = _git("status", "--porcelain", "--untracked-files=no")
    if status is None or status.returncode != 0:
        return sha + "-dirty?"  # the commit is known, its cleanliness is not
    return sha + ("-dirty" if status.stdout.strip() else "")


def versions() -> dict[str, str]:
    """What made this log (the ``versions`` attribute of docs/hdf5_schema.md): batchlaw as installed
    (a wheel has no git SHA), torch, megatron-core, h5py, numpy and Python."""
    import platform
    from importlib import metadata

    import h5py
    import numpy
    import torch

    from batchlaw.plugin import _mcore

    try:
        ours = metadata.version("batchlaw")
    except metadata.PackageNotFoundError:
        ours = "unknown"
    return {"batchlaw": ours, "torch": torch.__version__, "megatron_core": _mcore.VERSION, "h5py": h5py.__version__,
            "numpy": numpy.__version__, "python": platform.python_version()}


def _tokens(text: str) -> set[str]:
    return {t for t in re.split(r"[\s_/-]+", text.upper().removeprefix("NVIDIA").strip()) if t}


def device_profile(device_name: str, memory_gib: float | None = None) -> str | None:
    """The shipped system profile of a GPU as torch names it (``torch.cuda.get_device_name()``: e.g.
    "NVIDIA H100 80GB HBM3", "NVIDIA A100-SXM4-40GB", "NVIDIA B200"), or None when no profile fits.

    The alias of ``GPU_ALIASES`` whose words are all among the device name's words, most words
    first, wins ("A100-40GB" over "A100" for "NVIDIA A100-PCIE-40GB"; "B200" never matches "GB200").
    A bare family name ("A100") picks, among that family's profiles, the one whose memory is closest
    to ``memory_gib`` when it is given (an A100 is sold with 40 and 80 GB).
    """
    from batchlaw.simulator.system import GPU_ALIASES, load_system

    words = _tokens(device_name)
    hits = sorted(((len(_tokens(k)), k) for k in GPU_ALIASES if _tokens(k) <= words), reverse=True)
    if not hits:
        return None
    best_len, best = hits[0]
    if best_len > 1 or memory_gib is None or not math.isfinite(memory_gib):
        return GPU_ALIASES[best]
    family = {v for k, v in GPU_ALIASES.items() if next(iter(_tokens(best))) in _tokens(k)}
    return min(sorted(family), key=lambda name: abs(load_system(name).memory_gib - memory_gib))


def peak_flops(device_name: str | None, memory_gib: float | None = None) -> float:
    """Dense 16-bit peak FLOP/s of one GPU from its system profile (NaN on CPU or for an unknown GPU)."""
    if not device_name:
        return math.nan
    name = device_profile(device_name, memory_gib)
    if name is None:
        return math.nan
    from batchlaw.simulator.system import load_system

    return load_system(name).peak_tflops * 1e12


def main(argv: list[str] | None = None) -> int:
    """``python -m batchlaw.plugin.runmeta git-sha``: print :func:`git_sha` (the sbatch provenance line)."""
    argv = sys.argv[1:] if argv is None else argv
    if argv != ["git-sha"]:
        print("usage: python -m batchlaw.plugin.runmeta git-sha", file=sys.stderr)
        return 2
    print(git_sha())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
