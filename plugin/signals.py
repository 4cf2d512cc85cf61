"""Graceful stop: SIGTERM / SIGUSR1 (or a stop file) set a flag; the loop acts on it at the next step
boundary, once every rank agrees.

The handler only sets a flag (no I/O, no collectives inside a signal handler). The loop calls
``StopFlag.agreed(group)`` once per step: a MAX all-reduce of one scalar, so that every rank
checkpoints at the same step even when the signal reached only some of them. SLURM delivers
``--signal=USR1@T`` to the job step's tasks. A bare torchrun dies on SIGTERM/SIGUSR1 instead of
forwarding them; the sbatch script therefore starts it with USR1/TERM ignored and
``PET_SIGNALS_TO_HANDLE`` without them, and its trap creates ``checkpoint.stop_file`` (docs/slurm.md).
"""

from __future__ import annotations

import signal
from pathlib import Path

__all__ = ["StopFlag", "any_rank", "catch_early"]

_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)


def catch_early() -> list[int]:
    """Record SIGTERM / SIGUSR1 from now on (until ``StopFlag`` installs its handlers) in the returned
    list, then unblock them. ``batchlaw train`` starts its ranks with both blocked, so a signal sent while
    a rank starts up (imports, process group) waits here instead of killing it (issue 21: Ctrl-C in the
    first seconds of a multi-rank launch ended with status 143 and no "stopped" line). Stdlib only."""
    early: list[int] = []
    for sig in _SIGNALS:
        signal.signal(sig, lambda signum, frame: early.append(signum))
    signal.pthread_sigmask(signal.SIG_UNBLOCK, set(_SIGNALS))
    return early


class StopFlag:
    """A stop request raised by a signal or a stop file, agreed across ranks at step boundaries.

    Args:
        stop_file: path whose appearance requests a stop ("" = none).
        install: install the signal handlers now (``uninstall`` restores the previous ones).
    """

    def __init__(self, stop_file: str = "", *, install: bool = True):
        self.raised = False
        self.signum: int | None = None
        self.stop_file = Path(stop_file) if stop_file else None
        self._previous: dict[int, object] = {}
        if install:
            self.install()

    def _handler(self, signum, frame) -> None:
        self.raised, self.signum = True, signum

    def install(self) -> None:
        """Route SIGTERM and SIGUSR1 to the flag (main thread only, as Python requires)."""
        for sig in _SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handler)

    def uninstall(self) -> None:
        """Restore the handlers that were there before ``install``."""
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        self._previous = {}

    def agreed(self, group=None, device="cpu") -> bool:
        """True on every rank of ``group`` if a stop was requested on any of them (collective).

        ``device`` must suit the group's backend ("cuda" under NCCL).
        """
        if self.stop_file is not None and self.stop_file.exists():
            self.raised = True
        return any_rank(self.raised, group, device)


def any_rank(flag: bool, group=None, device="cpu") -> bool:
    """True on every rank of ``group`` if ``flag`` is True on any of them (one scalar MAX all-reduce;
    ``device`` must suit the group's backend: a CPU tensor goes through gloo)."""
    import torch
    import torch.distributed as dist

    t = torch.tensor([1.0 if flag else 0.0], device=device)
    if dist.is_initialized():
        dist.all_reduce(t, op=dist.ReduceOp.MAX, group=group)
    return bool(t.item())
