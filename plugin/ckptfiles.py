"""The checkpoint folder layout, torch-free: which checkpoints a run has published, and whether one
is intact.

``DIR/step_00000012/`` holds one ``rank_NNNNN.pt`` per rank and ``meta.json``, written by rank 0 once
every rank saved; the folder is written as ``step_00000012.tmp`` and renamed only then
(``plugin/checkpoint.py``). ``meta.json`` records, for every rank file, its size and a CRC-32 taken
while the file was written (``Digest``): a resume verifies them (``problem``) and skips a damaged
checkpoint (truncated, deleted, overwritten) for the one before it. CRC-32 (zlib; ISO-HDLC polynomial)
detects damage, not tampering; it runs at a few GB/s, so saving costs no extra read. A damaged
checkpoint is renamed ``step_00000012.damaged`` and kept for a post-mortem; nothing counts it again.
The trainer, the pre-launch resume check (``plugin/prelaunch.py``), ``batchlaw submit`` and probe-cbs
all read the layout through this module, so they apply one rule.
"""

from __future__ import annotations

import json
import re
import zlib
from pathlib import Path
from typing import Any, BinaryIO

__all__ = ["DAMAGED", "Digest", "META", "complete_checkpoints", "newest_first", "problem", "rank_file", "step_dir",
           "step_of"]

DAMAGED = ".damaged"

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


def newest_first(root: str | Path) -> list[Path]:
    """Every folder under ``root`` named like a published checkpoint, intact or not, newest first (a
    folder whose ``meta.json`` is gone is damaged, not unpublished: saves publish by renaming)."""
    root = Path(root)
    if not root.is_dir():
        return []
    return sorted((p for p in root.iterdir() if step_of(p) is not None and p.is_dir()), reverse=True)


def rank_file(rank: int) -> str:
    """The name of rank ``rank``'s file in a checkpoint folder."""
    return f"rank_{rank:05d}.pt"


class Digest:
    """A write-only file wrapper that counts the bytes and their CRC-32 as they are written (what
    ``torch.save`` needs of a file: ``write`` and ``flush``)."""

    def __init__(self, f: BinaryIO):
        self._f, self.bytes, self._crc = f, 0, 0

    def write(self, data) -> int:
        self._crc = zlib.crc32(data, self._crc)
        self.bytes += len(memoryview(data).cast("B"))
        return self._f.write(data)

    def flush(self) -> None:
        self._f.flush()

    def record(self) -> dict[str, Any]:
        """The manifest entry: ``{"bytes": n, "crc32": "8 hex digits"}``."""
        return {"bytes": self.bytes, "crc32": f"{self._crc:08x}"}


def _crc_of(path: Path) -> str:
    crc = 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 24):
            crc = zlib.crc32(chunk, crc)
    return f"{crc:08x}"


def problem(path: Path, rank: int) -> str:
    """What is wrong with checkpoint ``path`` as seen by ``rank`` ('' when nothing): ``meta.json``
    unreadable, a rank file missing or of another size than recorded, or this rank's own file with
    another CRC-32 (each rank reads only its own file in full). A rank the checkpoint has no file for
    (another world size) is not damage: loading it says which layout to resume with. A checkpoint
    written before files were recorded is checked for this rank's file only."""
    try:
        meta = json.loads((path / META).read_text())
        files = meta.get("files")
    except FileNotFoundError:
        return f"{META} is missing"
    except (OSError, ValueError, AttributeError) as exc:
        return f"{META} is unreadable ({type(exc).__name__})"
    if files is None:  # written before the manifest existed: presence only
        world = (meta.get("layout") or {}).get("world_size")
        if isinstance(world, int) and rank >= world:
            return ""  # another world size: loading names the layout mismatch
        return "" if (path / rank_file(rank)).is_file() else f"{rank_file(rank)} is missing"
    if not isinstance(files, dict) or not all(isinstance(v, dict) for v in files.values()):
        return f"{META} is unreadable (files)"
    for name, want in sorted(files.items()):
        f = path / name
        if not f.is_file():
            return f"{name} is missing"
        if f.stat().st_size != want.get("bytes"):
            return f"{name} has {f.stat().st_size} bytes, {want.get('bytes')} were written"
    own = files.get(rank_file(rank))
    if own is None:  # written by a smaller world: a layout mismatch, which loading names (not damage)
        return ""
    crc = _crc_of(path / rank_file(rank))
    if crc != own.get("crc32"):
        return f"{rank_file(rank)} has CRC-32 {crc}, {own.get('crc32')} was written"
    return ""
