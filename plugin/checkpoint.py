"""Checkpoint and resume: per-rank torch files in one directory per step, published atomically.

Layout: ``DIR/step_00000012/rank_00003.pt`` plus ``meta.json`` written by rank 0 after every rank
saved, with each rank file's size and CRC-32 (``plugin/ckptfiles.py``); the directory is written as
``step_X.tmp`` and renamed only then, so a half-written checkpoint is never picked up. Each rank
saves its model chunks, its optimizer state (through ``_mcore.optimizer_state``: with the
distributed optimizer, this rank's shard), the torch RNG state and the loop state (step, consumed
samples, ramp and smoothing state). ``resume_point`` picks the newest checkpoint that every rank
verifies; a damaged one is reported in one line and set aside (``step_X.damaged``), and when
none verifies the resume stops (``CheckpointsDamaged``). Resume requires the same layout (checked
against meta.json).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from batchlaw.plugin import _mcore
from batchlaw.plugin.ckptfiles import (DAMAGED, META, Digest, complete_checkpoints, newest_first, problem, rank_file,
                                       step_dir, step_of)

__all__ = ["CheckpointsDamaged", "ResumeError", "latest_checkpoint", "load_checkpoint", "resume_point",
           "save_checkpoint"]

log = logging.getLogger(__name__)


def latest_checkpoint(root: str | Path) -> Path | None:
    """Newest published checkpoint directory under ``root`` (None if there is none; not verified)."""
    done = complete_checkpoints(root)
    return done[-1] if done else None


class CheckpointsDamaged(RuntimeError):
    """Checkpoints exist but none verifies: resuming would silently start over."""


def resume_point(root: str | Path) -> Path | None:
    """Collective: the newest checkpoint under ``root`` that every rank verifies, or None when there is
    none at all. Each damaged one newer than it is named in one line (rank 0) and renamed
    ``step_X.damaged``; ``CheckpointsDamaged`` when checkpoints exist and none verifies."""
    rank, seen = dist.get_rank(), []
    for path in newest_first(root):  # every rank lists the same shared folder
        found = [None] * dist.get_world_size()
        dist.all_gather_object(found, problem(path, rank))
        bad = next((p for p in found if p), "")
        if not bad:
            return path
        seen.append(path.name)
        if rank == 0:
            older = "resuming from the one before it" if path != newest_first(root)[-1] else "it was the oldest"
            log.warning("checkpoint %s is damaged (%s); set aside as %s%s, %s", path, bad, path.name, DAMAGED, older)
            _set_aside(path)
        dist.barrier()
    if seen:
        raise CheckpointsDamaged(f"checkpoint.dir = {str(root)!r}: no checkpoint verifies ({', '.join(seen)} damaged,"
                                 f" kept as *{DAMAGED}); resuming would start the run over: restore a checkpoint, or"
                                 " set checkpoint.resume = false to start over on purpose")
    return None


def _set_aside(path: Path) -> None:
    target = path.with_name(path.name + DAMAGED)
    shutil.rmtree(target, ignore_errors=True)
    try:
        os.replace(path, target)
    except OSError:  # a read-only folder: leave it; it is skipped again next time
        pass


def save_checkpoint(root: str | Path, *, step: int, models: list, optimizer, loop_state: dict[str, Any],
                    layout: dict[str, int], distributed_optimizer: bool, keep: int = 2) -> Path:
    """Collective: every rank writes its part, rank 0 publishes and prunes old checkpoints."""
    root = Path(root)
    rank = dist.get_rank()
    final, tmp = step_dir(root, step), root / f"step_{step:08d}.tmp"
    if rank == 0:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    dist.barrier()
    state = {"model": [m.state_dict() for m in models], "rng": torch.get_rng_state(), "loop": loop_state,
             **_mcore.optimizer_state(optimizer, distributed_optimizer)}
    with open(tmp / rank_file(rank), "wb") as f:
        digest = Digest(f)
        torch.save(state, digest)
        f.flush()
        os.fsync(f.fileno())
    records = [None] * dist.get_world_size()
    dist.all_gather_object(records, (rank_file(rank), digest.record()))
    if rank == 0:
        (tmp / META).write_text(json.dumps({"step": step, "layout": layout, "files": dict(records)}))
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        old = [p for p in complete_checkpoints(root) if step_of(p) <= step]  # later ones: an abandoned past
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
    meta = json.loads((path / META).read_text())
    if meta["layout"] != layout:
        raise ResumeError(f"checkpoint {str(path)!r} was written with layout {meta['layout']}; this run has"
                          f" {layout}: resume with the same tp, pp and world size")
    rank = dist.get_rank()
    state = torch.load(path / rank_file(rank), weights_only=False)
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
