"""Tier (b), CPU + gloo + real megatron-core (world size 2): checkpoints that survive damage (issue 21).

A damaged newest checkpoint used to be a traceback (``meta.json`` truncated to 0 bytes:
``JSONDecodeError`` on rank 0, exit 1) while a complete older one sat beside it. Now ``meta.json``
records every rank file's size and CRC-32, and a resume takes the newest checkpoint that every rank
verifies. ``tests/plugin/damagedriver.py`` stops a run at step 6 (checkpoints at 4 and 6), then, for
each of the three files of the step-6 checkpoint (``meta.json`` and both ranks' files) and each
damage (truncated to half, truncated to 0 bytes, deleted, one byte changed), resumes a copy to the
end: each resumes from step 4 with one line naming the damage, sets the damaged checkpoint aside as
``step_00000006.damaged``, and ends with every step logged once and the losses of an uninterrupted
run bit for bit. When no checkpoint verifies, the resume stops with one line and exit status 1 and
the log is not started over.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import REPO, TINY

pytestmark = pytest.mark.dist

STEPS = 8


@pytest.fixture(scope="module")
def result(megatron, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("damage")
    args = [str(TINY), "--set", "log.path=log.h5", "--set", "log.flush_every=1", "--set", "checkpoint.dir=ckpt",
            "--set", "checkpoint.every=2", "--set", "checkpoint.keep=2", "--set", "log.stdout_every=0"]
    out = subprocess.run([sys.executable, str(Path(__file__).with_name("damagedriver.py")), str(workdir), str(STEPS),
                          "--", *args], capture_output=True, text=True, timeout=900, cwd=REPO,
                         env={"OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore", "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads((workdir / "result.json").read_text())


def test_every_single_file_damage_resumes_from_the_checkpoint_before(result):
    ref = result["reference"]
    assert ref["codes"] == [0, 0] and ref["steps"] == list(range(1, STEPS + 1))
    assert result["base"]["codes"] == [0, 0] and result["base"]["steps"] == list(range(1, 7))
    cases = {k: v for k, v in result.items() if k not in ("reference", "base", "meta.json:every")}
    assert len(cases) == 12  # 3 files x 4 damages
    for name, case in cases.items():
        notices = [line for line in case["err"].splitlines() if "is damaged" in line]
        assert case["codes"] == [0, 0], (name, case["err"][-2000:])
        assert len(notices) == 1 and "step_00000006" in notices[0] and "resuming from the one before" in notices[0], \
            (name, notices)
        assert "resumed from ckpt/step_00000004 at step 4" in case["err"], name
        assert "Traceback" not in case["err"], name
        assert case["steps"] == list(range(1, STEPS + 1)) and case["status"] == "completed", name
        assert case["loss"] == ref["loss"], name  # bit for bit: nothing lost, nothing doubled
        assert "step_00000006.damaged" in case["ckpt"] and "step_00000008" in case["ckpt"], (name, case["ckpt"])


def test_no_checkpoint_that_verifies_stops_in_one_line(result):
    case = result["meta.json:every"]
    errors = [line for line in case["err"].splitlines() if "error:" in line]
    assert case["codes"] == [1, 1] and len(errors) == 1, case["err"][-2000:]
    assert "no checkpoint verifies" in errors[0] and "checkpoint.resume = false" in errors[0]
    assert case["steps"] == list(range(1, 7))  # the log was not started over
