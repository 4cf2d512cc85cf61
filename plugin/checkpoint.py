"""Checkpoint and resume: per-rank torch files in one directory per step, published atomically.

Layout: ``DIR/step_00000012/rank_00003.pt`` plus ``meta.json`` written by rank 0 after every rank
saved; the directory is written as ``step_X.tmp`` and renamed only then, so a half-written
checkpoint is never picked up. Each rank saves its model chunks, its optimizer state (through
``_mcore.optimizer_state``: with the distributed optimizer, this rank's shard), the torch RNG state
and the loop state (step, consumed samples, ramp and smoothing state). Resume requires the same layout (checked against meta.json).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from batchlaw.plugin import _mcore
from batchlaw.plugin.ckptfiles import complete_checkpoints

__all__ = ["latest_checkpoint", "load_checkpoint", "save_checkpoint"]


def _step_dir(root: Path, step: int) -> Path:
    return root / f"step_{step:08d}"


def latest_checkpoint(root: str | Path) -> Path | None:
    """Newest complete checkpoint directory under ``root`` (None if there is none)."""
    done = complete_checkpoints(root)
    return done[-1] if done else None


def save_checkpoint(root: str | Path, *, step: int, models: list, optimizer, loop_state: dict[str, Any],
                    layout: dict[str, int], distributed_optimizer: bool, keep: int = 2) -> Path:
    """Collective: every rank writes its part, rank 0 publishes and prunes old checkpoints."""
    root = Path(root)
    rank = dist.get_rank()
    final, tmp = _step_dir(root, step), root / f"step_{step:08d}.tmp"
    if rank == 0:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    dist.barrier()
    state = {"model": [m.state_dict() for m in models], "rng": torch.get_rng_state(), "loop": loop_state,
             **_mcore.optimizer_state(optimizer, distributed_optimizer)}
    torch.save(state, tmp / f"rank_{rank:05d}.pt")
    dist.barrier()
    if rank == 0:
        (tmp / "meta.json").write_text(json.dumps({"step": step, "layout": layout}))
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        old = sorted(p for p in root.glob("step_*") if p.is_dir() and not p.name.endswith(".tmp"))
        for p in old[:-keep] if keep > 0 else []:
            shutil.rmtree(p, ignore_errors=True)
    dist.barrier()
    return final


class ResumeError(ValueError):
    """A checkpoint this run cannot resume (another layout or model shape)."""


@torch.no_grad()
def load_checkpoint(path: Path, *, models: list, optimizer, layout: dict[str, int],
                    distributed_optimizer: bool) -> dict[str, Any]:
    """Restore this rank's part; returns the loop state. Raises ``ResumeError`` (a ValueError: the rank
    answers it in one line) when the checkpoint was written by another layout or model shape."""
    meta = json.loads((path / "meta.json").read_text())
    if meta["layout"] != layout:
        raise ResumeError(f"checkpoint {str(path)!r} was written with layout {meta['layout']}; this run has"
                          f" {layout}: resume with the same tp, pp and world size")
    rank = dist.get_rank()
    state = torch.load(path / f"rank_{rank:05d}.pt", weights_only=False)
    for m, saved in zip(models, state["model"], strict=True):
        try:
            m.load_state_dict(saved)
        except RuntimeError as exc:  # size mismatch / missing keys: another model shape
            first = str(exc).strip().splitlines()
            raise ResumeError(f"checkpoint {str(path)!r} holds another model shape ({' '.join(first[:2])[:300]});"
                              " resume with the model it was written for, or use another checkpoint.dir") from None
    _mcore.load_optimizer_state(optimizer, state, distributed_optimizer)
    torch.set_rng_state(state["rng"])
    return state["loop"]
