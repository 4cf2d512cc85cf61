"""The checkpoint folder layout, torch-free: which checkpoints a run has published.

``DIR/step_00000012/`` holds one ``rank_NNNNN.pt`` per rank and ``meta.json``, written by rank 0 once
every rank saved; the folder is written as ``step_00000012.tmp`` and renamed only then
(``plugin/checkpoint.py``). The trainer, the pre-launch resume check (``plugin/prelaunch.py``),
``batchlaw submit`` and probe-cbs all read the layout through this module, so they apply one rule.
"""

from __future__ import annotations

import re
from pathlib import Path

__all__ = ["META", "complete_checkpoints", "step_dir", "step_of"]

META = "meta.json"
_STEP = re.compile(r"step_(\d{8})")


def step_dir(root: str | Path, step: int) -> Path:
    """The folder of the checkpoint of ``step`` under ``root``."""
    return Path(root) / f"step_{step:08d}"


def step_of(path: str | Path) -> int | None:
    """The step of a published checkpoint folder name (None for anything else: ``.tmp``, ``.damaged``)."""
    m = _STEP.fullmatch(Path(path).name)
    return int(m.group(1)) if m else None


def complete_checkpoints(root: str | Path) -> list[Path]:
    """The published checkpoints under ``root``, oldest first: ``step_NNNNNNNN`` folders with their
    ``meta.json``, never the ``.tmp`` ones a save is still writing."""
    root = Path(root)
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if step_of(p) is not None and p.is_dir() and (p / META).is_file())
