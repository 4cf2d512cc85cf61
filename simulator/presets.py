"""Published laws usable by name: one TOML file per preset in ``configs/laws/``.

Each file holds one law as ``law.to_dict()`` would write it (``kind`` plus the fields, nested tables
for nested laws) and names its source in comments and in ``citation``. ``load_preset(name)`` reads
and validates it strictly (unknown keys are listed with the valid ones).
"""

from __future__ import annotations

from pathlib import Path

from batchlaw.simulator.config import load_toml
from batchlaw.simulator import resources

__all__ = ["LAWS_DIR", "load_preset", "loss_preset_names", "preset_names"]

LAWS_DIR = resources.shipped_root() / "laws"


def preset_names(root: Path | None = None) -> list[str]:
    """Names of the presets on the config search path (or the stems of ``root/*.toml``)."""
    if root is not None:
        return sorted(p.stem for p in root.glob("*.toml"))
    return resources.names("laws")


def load_preset(name_or_path: str | Path):
    """A law by preset name (``steplaw-batch``) or from a TOML file path.

    Raises:
        ValueError: unknown name (listing the presets), or an invalid file.
    """
    from batchlaw.simulator.laws import law_from_dict

    path = resources.resolve("laws", name_or_path, field="law")
    return law_from_dict(load_toml(path), path.stem)


def loss_preset_names() -> list[str]:
    """Presets that predict a loss L(N, D, B) (usable as a grid's ``prune.loss_law``)."""
    from batchlaw.simulator.laws import LOSS_LAWS

    return [n for n in preset_names() if isinstance(load_preset(n), LOSS_LAWS)]
