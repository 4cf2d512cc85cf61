"""Checkpoint and resume: per-rank torch files in one directory per step, published atomically.

Layout: ``DIR/step_00000012/rank_00003.pt`` plus ``meta.json`` written by rank 0 after every rank
saved; the directory is written as ``step_X.tmp`` and renamed only then, so a half-written
checkpoint is never picked up. Each rank saves its model shard, its optimizer state (with the
distributed optimizer, megatron's ``save_parameter_state`` gathers the sharded state on DP rank 0),
the torch RNG state and the loop state (step, consumed samples, ramp and smoothing state). With
the distributed optimizer each rank saves its own shard (fp32 main parameters and Adam moments of
the inner torch optimizer) rather than megatron's gathered format, whose 0.16 loader fails without
apex (KeyError 'step'). Resume requires the same layout (checked against meta.json).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

__all__ = ["latest_checkpoint", "load_checkpoint", "save_checkpoint"]


def _inner_optimizers(optimizer) -> list:
    """The torch optimizers holding this rank's shard of main parameters and Adam moments."""
    return [o.optimizer for o in getattr(optimizer, "chained_optimizers", [optimizer])]


def _step_dir(root: Path, step: int) -> Path:
    return root / f"step_{step:08d}"


def latest_checkpoint(root: str | Path) -> Path | None:
    """Newest complete checkpoint directory under ``root`` (None if there is none)."""
    root = Path(root)
    if not root.is_dir():
        return None
    done = sorted(p for p in root.glob("step_*") if p.is_dir() and not p.name.endswith(".tmp")
                  and (p / "meta.json").is_file())
    return done[-1] if done else None


def save_checkpoint(root: str | Path, *, step: int, model, optimizer, loop_state: dict[str, Any],
                    layout: dict[str, int], distributed_optimizer: bool, keep: int = 2) -> Path:
    """Collective: every rank writes its part, rank 0 publishes and prunes old checkpoints."""
    root = Path(root)
    rank = dist.get_rank()
    final, tmp = _step_dir(root, step), root / f"step_{step:08d}.tmp"
    if rank == 0:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    dist.barrier()
    state = {"model": model.state_dict(), "rng": torch.get_rng_state(), "loop": loop_state}
    if distributed_optimizer:
        state["optimizer_shards"] = [
            {"torch": inner.state_dict(), "params": [p.detach().clone() for g in inner.param_groups for p in g["params"]]}
            for inner in _inner_optimizers(optimizer)]
    else:
        state["optimizer"] = optimizer.state_dict()
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


@torch.no_grad()
def load_checkpoint(path: Path, *, model, optimizer, layout: dict[str, int],
                    distributed_optimizer: bool) -> dict[str, Any]:
    """Restore this rank's part; returns the loop state. Raises ValueError on a layout mismatch."""
    meta = json.loads((path / "meta.json").read_text())
    if meta["layout"] != layout:
        raise ValueError(f"checkpoint {str(path)!r} was written with layout {meta['layout']}; this run has"
                         f" {layout}: resume with the same tp, pp and world size")
    rank = dist.get_rank()
    state = torch.load(path / f"rank_{rank:05d}.pt", weights_only=False)
    model.load_state_dict(state["model"])
    if distributed_optimizer:
        for inner, saved in zip(_inner_optimizers(optimizer), state["optimizer_shards"], strict=True):
            for p, value in zip([p for g in inner.param_groups for p in g["params"]], saved["params"], strict=True):
                p.copy_(value)
            inner.load_state_dict(saved["torch"])
    else:
        optimizer.load_state_dict(state["optimizer"])
    torch.set_rng_state(state["rng"])
    return state["loop"]
