"""Pre-launch checks that look at the run's world: the device, the file system, existing logs and
checkpoints. One home for each (issue 20): ``batchlaw train`` calls :func:`check_prelaunch` before it
starts any rank, every rank calls it again before it builds anything (an sbatch script or torchrun by
hand skips the launcher), ``batchlaw submit`` calls :func:`check_indexed_data` for each planned run.

The pure rules (ranges, divisibility, sizes) live in ``simulator/checks.py`` and run when a config is
built; what is here needs the machine. Torch-free and megatron-free (stdlib, plus h5py when a log is
read), so tools may import it (``tests/test_layering.py``). Each failure is a ``ValueError`` with ONE
line naming the field, the value and what is allowed.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

__all__ = ["DATA_HINT", "check_indexed_data", "check_prelaunch", "cuda_visible", "log_status",
           "missing_indexed_files", "resumable", "sequence_parallel_on_cpu"]

DATA_HINT = ("build one with `batchlaw data build --input FILE... --out PREFIX`, point to one with"
             " --set data.path=PREFIX, or try the run without data with --set data.kind=synthetic")
"""How to proceed when an indexed dataset is missing (the same words wherever it is checked)."""


def _fail(field: str, value: Any, allowed: str) -> None:
    raise ValueError(f"{field} = {value!r}: {allowed}")


def cuda_visible() -> bool:
    """Whether the ranks will see a CUDA device, decided without importing torch."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None and env.strip() in ("", "-1"):
        return False
    return any(Path("/dev").glob("nvidia[0-9]*"))


def missing_indexed_files(prefix: str) -> list[str]:
    """The files of the indexed dataset ``prefix`` (``PREFIX.bin``, ``PREFIX.idx``) that are not there."""
    return [f"{prefix}{suffix}" for suffix in (".bin", ".idx") if not Path(prefix + suffix).is_file()]


def check_indexed_data(prefix: str, field: str = "data.path") -> None:
    """An indexed dataset (both files written by ``batchlaw data build``) exists at ``prefix``."""
    missing = missing_indexed_files(prefix)
    if missing:
        _fail(field, prefix, f"no indexed dataset there ({missing[0]} is missing); {DATA_HINT}")


def sequence_parallel_on_cpu(cfg: Any, *, on_cpu: bool) -> None:
    """Sequence parallelism needs Transformer Engine's or apex's norm on a GPU (megatron refuses torch's)."""
    if cfg.parallel.sequence_parallel and on_cpu:
        _fail("parallel.sequence_parallel", True, "needs Transformer Engine or NVIDIA apex on a GPU"
              " (pip install transformer-engine[pytorch]); set it to false on CPU")


def _creatable(field: str, value: str, *, is_dir: bool) -> None:
    """``value`` exists with the right kind, or its nearest existing ancestor is a writable directory."""
    p = Path(value)
    if p.exists():
        if is_dir and not p.is_dir():
            _fail(field, value, "exists and is not a directory")
        if not is_dir and p.is_dir():
            _fail(field, value, "is a directory; a file path is expected")
    parent = p if is_dir else p.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if parent.exists() and not parent.is_dir():
        _fail(field, value, f"cannot be created: {str(parent)!r} is a file, not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        _fail(field, value, f"cannot be created: {str(parent)!r} is not writable")


def check_prelaunch(cfg: Any, *, on_cpu: bool) -> None:
    """What needs the run's world: the device and the file system. Called by ``batchlaw train`` before
    its ranks start and by every rank before it builds anything, so both refuse the same configs."""
    sequence_parallel_on_cpu(cfg, on_cpu=on_cpu)
    if cfg.data.kind == "indexed":
        check_indexed_data(cfg.data.path)
    for field, value, is_dir in (("checkpoint.dir", cfg.checkpoint.dir, True), ("log.path", cfg.log.path, False),
                                 ("log.tensorboard", cfg.log.tensorboard, True),
                                 ("log.done_marker", cfg.log.done_marker, False),
                                 ("checkpoint.stop_file", cfg.checkpoint.stop_file, False)):
        if value:
            _creatable(field, value, is_dir=is_dir)
    if cfg.log.tensorboard:
        import importlib.util

        if importlib.util.find_spec("tensorboard") is None:
            _fail("log.tensorboard", cfg.log.tensorboard, "needs TensorBoard: pip install tensorboard")
    if cfg.log.path and Path(cfg.log.path).is_file() and not resumable(cfg) \
            and log_status(Path(cfg.log.path)) == "completed":
        _fail("log.path", cfg.log.path, "holds a completed run and this launch has no checkpoint to resume, so it"
              " would start the log over; remove it or choose another log.path")


def resumable(cfg: Any) -> bool:
    """Whether the run would resume from a checkpoint (the trainer's rule: resume on and a published one)."""
    from batchlaw.plugin.ckptfiles import complete_checkpoints

    return bool(cfg.checkpoint.resume and cfg.checkpoint.dir and complete_checkpoints(cfg.checkpoint.dir))


def log_status(path: Path) -> str:
    """The ``status`` attribute of a run log ('' when it cannot be read: the writer decides then)."""
    try:
        import h5py

        with h5py.File(path, "r", locking=False, swmr=True) as f:
            status = f.attrs.get("status", "")
        return status.decode() if isinstance(status, bytes) else str(status)
    except (OSError, ValueError, KeyError):
        return ""
