"""Metric sinks: the ``MetricSink`` protocol and its Null, Stdout, HDF5 and TensorBoard forms,
combined by ``SinkContainer`` (torchtitan ``BaseLogger`` / ``LoggerContainer``). Only the metrics
rank (the first rank of the last pipeline stage, torchtitan ``_get_metrics_rank``) builds real sinks.
"""

from __future__ import annotations

import logging
import math
from typing import Any, Mapping, Protocol

__all__ = ["HDF5Sink", "MetricSink", "NullSink", "SinkContainer", "StdoutSink", "TensorBoardSink",
           "is_metrics_rank"]

log = logging.getLogger(__name__)


class MetricSink(Protocol):
    """Where per-step rows and sparse events go."""

    def log_step(self, row: Mapping[str, float]) -> None: ...

    def log_event(self, group: str, row: Mapping[str, float]) -> None: ...

    def flush(self) -> None: ...

    def close(self, status: str) -> None: ...


class NullSink:
    """Discards everything (non-metrics ranks, or logging disabled)."""

    def log_step(self, row: Mapping[str, float]) -> None:
        pass

    def log_event(self, group: str, row: Mapping[str, float]) -> None:
        pass

    def flush(self) -> None:
        pass

    def close(self, status: str) -> None:
        pass


class StdoutSink(NullSink):
    """One progress line every ``every`` steps."""

    def __init__(self, every: int = 1):
        self.every = every

    def log_step(self, row: Mapping[str, float]) -> None:
        if self.every and row["step"] % self.every == 0:
            b = row.get("gns_trace", math.nan) / row.get("gns_g2", math.nan) if row.get("gns_g2") else math.nan
            print(f"step {int(row['step']):>6d} | batch {int(row['global_batch_size']):>5d} | "
                  f"loss {row['loss']:.4f} | lr {row['lr']:.3e} | |g| {row['grad_norm']:.3f} | "
                  f"B_simple(step) {b:.3g} | {row['step_time_s'] * 1e3:.2f} ms", flush=True)


class HDF5Sink(NullSink):
    """Rows and events into a ``RunLogWriter``."""

    def __init__(self, writer):
        self.writer = writer

    def log_step(self, row: Mapping[str, float]) -> None:
        self.writer.append(row)

    def log_event(self, group: str, row: Mapping[str, float]) -> None:
        self.writer.event(group, row)

    def flush(self) -> None:
        self.writer.flush()

    def close(self, status: str) -> None:
        self.writer.close(status)


class TensorBoardSink(NullSink):
    """Mirror of the step metrics for TensorBoard (optional)."""

    def __init__(self, logdir: str):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as exc:
            raise ImportError("log.tensorboard needs TensorBoard: pip install tensorboard") from exc
        self._w = SummaryWriter(logdir)

    def log_step(self, row: Mapping[str, float]) -> None:
        step = int(row["step"])
        for k, v in row.items():
            if k != "step" and isinstance(v, (int, float)) and math.isfinite(v):
                self._w.add_scalar(k, v, step)

    def close(self, status: str) -> None:
        self._w.close()


class SinkContainer(NullSink):
    """Fans every call out to several sinks; closes all of them even if one fails."""

    def __init__(self, sinks: list[Any]):
        self.sinks = list(sinks)

    def log_step(self, row: Mapping[str, float]) -> None:
        for s in self.sinks:
            s.log_step(row)

    def log_event(self, group: str, row: Mapping[str, float]) -> None:
        for s in self.sinks:
            s.log_event(group, row)

    def flush(self) -> None:
        for s in self.sinks:
            s.flush()

    def close(self, status: str) -> None:
        errors = []
        for s in self.sinks:
            try:
                s.close(status)
            except Exception as exc:  # noqa: BLE001 - close the rest, then re-raise
                errors.append(exc)
        if errors:
            raise errors[0]


def is_metrics_rank(*, tp_rank: int, dp_rank: int, pp_rank: int, pp_size: int) -> bool:
    """True on the first rank of the last pipeline stage."""
    return tp_rank == 0 and dp_rank == 0 and pp_rank == pp_size - 1
