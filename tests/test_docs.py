"""Tier (a), pure: docs/hdf5_schema.md lists exactly the columns of plugin/logschema.py."""

import re
from pathlib import Path

from batchlaw.plugin import logschema


def test_schema_doc_lists_every_column():
    text = (Path(__file__).resolve().parents[1] / "docs" / "hdf5_schema.md").read_text()
    documented = set(re.findall(r"^\| `(\w+)` \| [if]8 \|", text, flags=re.M))
    assert documented == set(logschema.STEP_COLUMNS)
    for attr in logschema.ATTRS:
        assert f"`{attr}`" in text
