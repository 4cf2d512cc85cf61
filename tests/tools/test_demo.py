"""Tier (b), CPU + gloo + real megatron-core: ``batchlaw demo --quick`` runs the whole loop as a designed study
(design wave 1, build data, train it and a ramp run, design wave 2 from the logs and train it, analyse with
the study's priors and the predicted-against-measured comparison, calibrate)."""

import numpy as np
import pytest

from batchlaw.tools.cli import main

pytestmark = [pytest.mark.dist, pytest.mark.slow]


def test_demo_quick_whole_loop(tmp_path, capsys):
    pytest.importorskip("megatron.core")
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--out-dir", str(out)]) == 0
    text = capsys.readouterr().out
    assert "== 1/6 design the study" in text and "== 6/6 calibrate" in text and "report:" in text
    from batchlaw.simulator.plan import read_plan

    wave1, doc = read_plan(out / "plans" / "wave1.csv")
    assert "predicted" in doc and doc["base_config"]["model"]["name"]
    logs = sorted((out / "runs").glob("*/log.h5"))
    assert all((p.parent / "COMPLETED").is_file() for p in logs)
    # every run of wave 1 ran exactly as planned: its batch, LR and seed
    from batchlaw.tools.logs import load_runs, read_columns

    ran = {(r.model_name, r.global_batch, r.config["train"]["lr"], r.config["train"]["seed"]) for r in load_runs(out / "runs")}
    for i in range(len(wave1["model"])):
        assert (wave1["model"][i], int(wave1["global_batch"][i]), float(wave1["lr"][i]), int(wave1["seed"][i])) in ran
    report = (out / "report" / "report.md").read_text()
    assert "| demo-m |" in report and "- B_opt(N)" in report  # a law, or "none" and why
    assert "## Design: predicted against measured, wave by wave" in report and (out / "report" / "waves.png").is_file()
    ramp = next((out / "runs").glob("demo-s-*-ramp"))
    batches = read_columns(ramp / "log.h5", ["global_batch_size"])["global_batch_size"]
    assert batches[0] < batches[-1] and np.all(np.diff(batches) >= 0)
    assert (out / "cpu-gloo-calibrated.toml").is_file()
    # a second call plans nothing new for wave 1 and skips what completed (idempotent)
    n = len(logs)
    assert main(["demo", "--quick", "--out-dir", str(out)]) == 0
    assert "already completed" in capsys.readouterr().out
    assert len(sorted((out / "runs").glob("*/log.h5"))) >= n
