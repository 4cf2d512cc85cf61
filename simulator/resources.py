"""Where named configs (models, systems, grids, laws, runs) and the sbatch template are found.

Search order for ``find("models", "gpt-180m")``:

1. each folder in ``$BATCHLAW_CONFIG_PATH`` (``os.pathsep``-separated; ``batchlaw --config-dir DIR``
   prepends DIR), each holding ``models/``, ``systems/``, ``grids/``, ``laws/``, ``runs/``;
2. the legacy single folder ``$BATCHLAW_CONFIG_DIR``;
3. the configs shipped inside the package (``importlib.resources``: ``batchlaw.configs``), which in a
   checkout (editable install) is the repository's ``configs/``.

The first folder holding ``<kind>/<name>.toml`` wins; ``names(kind)`` lists the union.
"""

from __future__ import annotations

import importlib.resources
import os
from pathlib import Path

__all__ = ["KINDS", "find", "names", "search_path", "shipped_root", "template"]

KINDS = ("models", "systems", "grids", "laws", "runs")


def _package_dir(package: str, fallback: str) -> Path:
    try:
        return Path(str(importlib.resources.files(package)))
    except ModuleNotFoundError:  # pragma: no cover - a source tree that was never installed
        return Path(__file__).resolve().parent.parent / fallback


def shipped_root() -> Path:
    """The configs shipped with the package (``configs/`` of a checkout)."""
    return _package_dir("batchlaw.configs", "configs")


def template(name: str = "train.sbatch") -> Path:
    """A file of the shipped ``slurm/`` folder (the sbatch template)."""
    return _package_dir("batchlaw.slurm", "slurm") / name


def search_path() -> list[Path]:
    """The config folders in search order (user folders first, the shipped ones last)."""
    user = [Path(p) for p in os.environ.get("BATCHLAW_CONFIG_PATH", "").split(os.pathsep) if p]
    legacy = os.environ.get("BATCHLAW_CONFIG_DIR")
    return user + ([Path(legacy)] if legacy else []) + [shipped_root()]


def find(kind: str, name: str) -> Path | None:
    """The first ``<folder>/<kind>/<name>.toml`` on the search path, or None."""
    assert kind in KINDS, kind
    for root in search_path():
        p = root / kind / f"{name}.toml"
        if p.is_file():
            return p
    return None


def names(kind: str) -> list[str]:
    """Every name of ``kind`` on the search path (sorted, without duplicates)."""
    assert kind in KINDS, kind
    return sorted({p.stem for root in search_path() for p in (root / kind).glob("*.toml")})
