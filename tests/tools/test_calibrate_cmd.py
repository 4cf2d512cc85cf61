"""Tier (a), pure (h5py, no torch): ``batchlaw calibrate`` reads each log's RunSpec and refuses logs
from another device class than the profile's unless --force (issue 9: an H100 profile was written
from CPU logs without a word)."""

import json

import numpy as np

from batchlaw.plugin.h5log import RunLogWriter
from batchlaw.simulator import config
from batchlaw.simulator.runconfig import load_run_config
from batchlaw.tools.cli import main


def _cpu_logs(root, n=4):
    for b in (8, 16, 32, 64)[:n]:
        spec = load_run_config("tiny-cpu", [f"train.global_batch={b}"])
        w = RunLogWriter(root / f"b{b}" / "log.h5", attrs={
            "config": json.loads(config.to_json(spec)), "model_name": "tiny", "num_params": 200_000, "seq_len": 64,
            "layout": {"world_size": 1, "tp": 1, "pp": 1, "vpp": 1, "dp": 1, "micro_batch": 2, "device": "cpu"}})
        for s in range(1, 21):
            w.append({"step": s, "tokens": s * b * 64, "global_batch_size": b, "loss": 5.0 - 0.01 * s,
                      "step_time_s": 0.01 * b * (1 + 0.01 * np.sin(s)), "tokens_per_s": 1.0})
        w.close("completed")


def test_other_device_class_is_refused_unless_forced(tmp_path, capsys):
    _cpu_logs(tmp_path / "runs")
    out = tmp_path / "h100.toml"
    assert main(["calibrate", str(tmp_path / "runs"), "--system", "h100-sxm", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "ran on cpu, profile 'h100-sxm' is a gpu profile" in err and "--force" in err and not out.exists()
    assert main(["calibrate", str(tmp_path / "runs"), "--system", "cpu-gloo", "--params", "overhead_s",
                 "--out", str(tmp_path / "cpu.toml")]) == 0
    assert (tmp_path / "cpu.toml").is_file()
    assert main(["calibrate", str(tmp_path / "runs"), "--system", "h100-sxm", "--params", "overhead_s", "--force",
                 "--out", str(out)]) == 0
    assert out.is_file()


def test_bad_logs_are_named_skipped_and_exit_like_analyze(tmp_path, capsys):
    """Exit status as ``analyze`` (docs/analysis.md): 1 profile written but logs skipped, 2 nothing usable."""
    runs = tmp_path / "runs"
    _cpu_logs(runs)
    good = (runs / "b64" / "log.h5").read_bytes()
    (runs / "truncated.h5").write_bytes(good[: len(good) // 2])
    (runs / "junk.h5").write_bytes(b"not hdf5 at all")
    out = tmp_path / "cpu.toml"
    assert main(["calibrate", str(runs), "--system", "cpu-gloo", "--params", "overhead_s", "--out", str(out)]) == 1
    err = capsys.readouterr().err.splitlines()
    assert out.is_file()
    skipped = [line for line in err if line.startswith("batchlaw: skipped: ")]
    assert len(skipped) == 2 and any("truncated.h5" in s for s in skipped) and any("junk.h5" in s for s in skipped)
    assert "batchlaw: 2 unreadable log(s) skipped (exit status 1)" in err

    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "truncated.h5").write_bytes(good[: len(good) // 2])
    out2 = tmp_path / "none.toml"
    assert main(["calibrate", str(bad), "--system", "cpu-gloo", "--params", "overhead_s", "--out", str(out2)]) == 2
    err = capsys.readouterr().err
    assert "no readable *.h5 run logs" in err and "truncated.h5" in err and not out2.exists()


def test_prior_sigma_lets_own_logs_move_the_overheads(tmp_path, capsys):
    # logs at 10 ms per sequence (20 ms per micro-batch of 2): a narrow prior keeps the profile's 1 ms per
    # micro-batch overhead, the default wide prior lets the logs move it by an order of magnitude
    from batchlaw.simulator.system import load_system

    _cpu_logs(tmp_path / "runs")
    narrow, wide = tmp_path / "narrow.toml", tmp_path / "wide.toml"
    args = ["calibrate", str(tmp_path / "runs"), "--system", "cpu-gloo", "--params", "overhead_mb_s"]
    assert main(args + ["--prior-sigma", "0.01", "--out", str(narrow)]) == 0
    assert main(args + ["--out", str(wide)]) == 0
    start = load_system("cpu-gloo").efficiency.overhead_mb_s
    assert abs(load_system(narrow).efficiency.overhead_mb_s / start - 1) < 0.2
    assert load_system(wide).efficiency.overhead_mb_s > 5 * start
    capsys.readouterr()
    assert main(args + ["--prior-sigma", "-1", "--out", str(tmp_path / "bad.toml")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--prior-sigma = -1.0" in err[0] and not (tmp_path / "bad.toml").exists()


def test_calibrate_refuses_what_it_cannot_fit(tmp_path, capsys):
    """Session-5 audit: one run fitted 4 parameters and wrote a profile; a log without step times failed with
    scipy's "Residuals are not finite"; one without a layout raised KeyError; a ramp run was priced at its
    last batch with the median step time of all its batches."""
    import h5py

    one = tmp_path / "one"
    _cpu_logs(one, n=1)
    out = tmp_path / "p.toml"
    args = ["--system", "cpu-gloo", "--params", "matmul_max,hbm_eff,overhead_s,overhead_mb_s", "--out", str(out)]
    assert main(["calibrate", str(one), *args]) == 2
    assert "1 usable run (completed, constant batch) for 4 parameters" in capsys.readouterr().err
    for attr, value, message in (("layout", json.dumps({"device": "cpu"}), "no launched layout"),
                                 (None, None, "no step times")):
        d = tmp_path / f"bad-{attr}"
        _cpu_logs(d)
        with h5py.File(d / "b8" / "log.h5", "a") as f:
            if attr:
                f.attrs[attr] = value
            else:
                f["steps/step_time_s"][...] = np.nan
        # named, left out, and the profile written from the other three (exit 1, as for unreadable logs)
        assert main(["calibrate", str(d), "--system", "cpu-gloo", "--params", "overhead_s", "--out", str(out)]) == 1
        err = capsys.readouterr().err
        assert any(line.startswith("batchlaw: skipped: ") and message in line and "b8" in line
                   for line in err.splitlines()), err
        assert out.is_file()
        out.unlink()
    ramp = tmp_path / "ramp"
    _cpu_logs(ramp)
    with h5py.File(ramp / "b64" / "log.h5", "a") as f:  # a ramp: 8 sequences first, then 64
        gbs = f["steps/global_batch_size"]
        gbs[:10] = 8
        cfg = json.loads(f.attrs["config"])  # the run is classified by its logged ramp, not by its batches
        cfg["train"]["ramp"] = {"shape": "staircase", "start": 8, "incr": 8, "ramp_samples": 80}
        f.attrs["config"] = json.dumps(cfg)
    from batchlaw.tools.calibrate_cmd import rows_from_logs
    from batchlaw.tools.logs import load_runs

    rows = rows_from_logs(load_runs(ramp), "cpu-gloo")
    assert sorted(rows["global_batch"]) == [8, 16, 32]  # the ramp run is left out


def test_logs_left_out_are_named_even_when_none_remain(tmp_path, capsys):
    """Review of session 5: when every log was left out, only "no completed ... run logs" was printed."""
    import h5py

    _cpu_logs(tmp_path, n=2)
    for b in (8, 16):
        with h5py.File(tmp_path / f"b{b}" / "log.h5", "a") as f:
            f["steps/step_time_s"][...] = np.nan
    assert main(["calibrate", str(tmp_path), "--system", "cpu-gloo", "--params", "overhead_s",
                 "--out", str(tmp_path / "p.toml")]) == 2
    err = capsys.readouterr().err
    assert err.count("batchlaw: skipped: ") == 2 and "no step times" in err and "no completed" in err


_LOCAL = {"linear": "megatron.ColumnParallelLinear,megatron.RowParallelLinear", "norm": "megatron.WrappedTorchNorm"}
_TE = {"linear": "megatron.TELayerNormColumnParallelLinear,megatron.TERowParallelLinear", "norm": "none"}


def _logs_with_kernels(root, framework, kernels):
    for b in (8, 16, 32, 64):
        spec = load_run_config("tiny-cpu", [f"train.global_batch={b}", f"system.framework={framework}"])
        w = RunLogWriter(root / f"b{b}" / "log.h5", attrs={
            "config": json.loads(config.to_json(spec)), "model_name": "tiny", "num_params": 200_000, "seq_len": 64,
            "kernels": kernels,
            "layout": {"world_size": 1, "tp": 1, "pp": 1, "vpp": 1, "dp": 1, "micro_batch": 2, "device": "cpu"}})
        for s in range(1, 21):
            w.append({"step": s, "tokens": s * b * 64, "global_batch_size": b, "loss": 5.0 - 0.01 * s,
                      "step_time_s": 0.01 * b, "tokens_per_s": 1.0})
        w.close("completed")


def test_logged_kernels_must_match_the_planned_framework(tmp_path, capsys):
    # issue 22, plan = run: a run planned with Transformer Engine's kernels whose log says the local ones ran
    # would fit the TE profile to local-kernel step times
    _logs_with_kernels(tmp_path / "te-planned", "batchlaw-te", _LOCAL)
    args = ["calibrate", str(tmp_path / "te-planned"), "--system", "cpu-gloo", "--params", "overhead_s"]
    assert main(args + ["--out", str(tmp_path / "x.toml")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "planned as framework batchlaw-te but its kernels attribute says batchlaw-local" in err[0]
    assert not (tmp_path / "x.toml").exists()


def test_calibrate_prices_the_kernels_that_ran_and_names_the_priors(tmp_path, capsys):
    from batchlaw.simulator.system import load_system

    _logs_with_kernels(tmp_path / "local", "batchlaw", _LOCAL)
    fitted = tmp_path / "local.toml"
    assert main(["calibrate", str(tmp_path / "local"), "--system", "cpu-gloo", "--params", "overhead_s",
                 "--out", str(fitted)]) == 0
    out = capsys.readouterr().out
    assert "planned_s" in out and "logged_s" in out and out.count("tiny b") == 4  # one line per run
    assert "framework batchlaw-local; still priors" in out and "overhead_mb_s" in out
    prof = load_system(fitted)
    assert prof.calibration.framework == "batchlaw-local"
    # a profile fitted on local-kernel runs does not start a fit of TE runs
    _logs_with_kernels(tmp_path / "te", "batchlaw", _TE)
    assert main(["calibrate", str(tmp_path / "te"), "--system", str(fitted), "--params", "overhead_s", "--force",
                 "--out", str(tmp_path / "y.toml")]) == 2
    err = capsys.readouterr().err
    assert "was fitted on batchlaw-local runs and these logs ran batchlaw-te" in err
