"""Where named configs (models, systems, grids, laws, runs, studies, frameworks), the sbatch template and the
public data sets are found.

Search order for ``find("models", "gpt-180m")``:

1. each folder in ``$BATCHLAW_CONFIG_PATH`` (``os.pathsep``-separated; ``batchlaw --config-dir DIR``
   prepends DIR), each holding ``models/``, ``systems/``, ``grids/``, ``laws/``, ``runs/``, ``studies/``, ``frameworks/``;
2. the configs shipped inside the package (``importlib.resources``: ``batchlaw.configs``), which in a
   checkout (editable install) is the repository's ``configs/``.

The old single folder ``$BATCHLAW_CONFIG_DIR`` is retired: set, it is a one-line error naming the new way.

The first folder holding ``<kind>/<name>.toml`` wins; ``names(kind)`` lists the union.

The public data sets (``data/`` of a checkout: CSV files with their PROVENANCE) ship inside the package as
``batchlaw.data``; ``data_file("data/steplaw/dense_lr_bs_loss.csv")`` returns that file where it exists as
given (relative to the working folder), else the shipped copy, so documented commands run from a wheel too.
"""

from __future__ import annotations

import importlib.resources
import os
from pathlib import Path

__all__ = ["KINDS", "data_file", "data_names", "data_root", "find", "names", "resolve", "search_path",
           "shipped_root", "template"]

KINDS = ("models", "systems", "grids", "laws", "runs", "studies", "frameworks")

# How an error message calls the names of each kind it lists.
_LISTED_AS = {"models": "shipped models", "systems": "shipped profiles", "grids": "shipped grids",
              "laws": "presets", "runs": "shipped run configs", "studies": "shipped studies",
              "frameworks": "framework presets"}


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


def data_root() -> Path:
    """The public data sets shipped with the package (``data/`` of a checkout)."""
    return _package_dir("batchlaw.data", "data")


def data_names() -> list[str]:
    """The shipped data files (CSV), as ``<set>/<file>`` relative to ``data_root()``."""
    root = data_root()
    return sorted(p.relative_to(root).as_posix() for p in root.glob("*/*.csv"))


def data_file(name: str | Path, *, field: str = "--data") -> Path:
    """A data file: ``name`` itself when that file exists, else the shipped data set of that name
    (``steplaw/dense_lr_bs_loss.csv``, with or without a leading ``data/``, as the docs write it).

    Raises:
        ValueError: one line naming ``field``, the value and every shipped data file.
    """
    path = Path(name)
    if path.is_file():
        return path
    parts = path.parts[1:] if path.parts[:1] == ("data",) else path.parts
    if parts and not path.is_absolute() and ".." not in parts and data_root().joinpath(*parts).is_file():
        return data_root().joinpath(*parts)
    raise ValueError(f"{field} {str(name)!r}: no such file, and no shipped data set of that name; shipped are "
                     f"{', '.join('data/' + n for n in data_names())}")


def search_path() -> list[Path]:
    """The config folders in search order (user folders first, the shipped ones last)."""
    if os.environ.get("BATCHLAW_CONFIG_DIR"):
        raise ValueError("$BATCHLAW_CONFIG_DIR was retired; use BATCHLAW_CONFIG_PATH=DIR (or batchlaw --config-dir DIR)")
    user = [Path(p) for p in os.environ.get("BATCHLAW_CONFIG_PATH", "").split(os.pathsep) if p]
    return user + [shipped_root()]


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


def resolve(kind: str, name_or_path: str | Path, *, field: str, inline: str = "") -> Path:
    """The file of a config given by name (looked up with ``find``) or by a ``.toml`` path (returned as is).

    Args:
        kind: one of ``KINDS``.
        name_or_path: a config name (``gpt-180m``) or a path ending in ``.toml``.
        field: what the user set, named in the error (``model``, ``model.name``, ``system``).
        inline: for a field that takes a name only (never a path): the other way to give the config,
            named in the error instead of "or a TOML path".

    Raises:
        ValueError: one line naming ``field``, the value, and every name of ``kind`` on the search path.
    """
    path = Path(name_or_path)
    if path.suffix == ".toml" and not inline:
        return path
    found = find(kind, str(name_or_path))
    if found is None:
        raise ValueError(f"{field} = {str(name_or_path)!r}: unknown; {_LISTED_AS[kind]} are "
                         f"{', '.join(names(kind))} ({inline or 'or a TOML path'})")
    return found
