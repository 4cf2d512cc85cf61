"""Tier (b), CPU + gloo + real megatron-core: ``batchlaw demo --quick`` runs the whole loop
(simulate and prune, build data, train 10 runs including a ramp, analyse, calibrate)."""

import numpy as np
import pytest

from batchlaw.tools.cli import main

pytestmark = [pytest.mark.dist, pytest.mark.slow]


def test_demo_quick_whole_loop(tmp_path, capsys):
    pytest.importorskip("megatron.core")
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--out-dir", str(out)]) == 0
    text = capsys.readouterr().out
    assert "== 5/5 calibrate" in text and "report:" in text
    logs = sorted((out / "runs").glob("*/log.h5"))
    assert len(logs) == 10  # 3 models x 3 batches + one ramp run
    assert all((p.parent / "COMPLETED").is_file() for p in logs)
    report = (out / "report" / "report.md").read_text()
    assert "| demo-m |" in report and "- B_opt(N)" in report  # a law, or "none" and why
    from batchlaw.tools.logs import read_columns

    ramp = read_columns(out / "runs" / "demo-s-b8-ramp" / "log.h5", ["global_batch_size"])["global_batch_size"]
    assert ramp[0] == 2 and ramp[-1] == 8 and np.all(np.diff(ramp) >= 0)
    assert (out / "cpu-gloo-calibrated.toml").is_file()
    # a second call skips completed runs (idempotent)
    assert main(["demo", "--quick", "--out-dir", str(out)]) == 0
    assert "10 already completed" in capsys.readouterr().out
