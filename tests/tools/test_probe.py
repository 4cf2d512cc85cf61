"""Tier (a), pure (numpy; no torch): the probe-cbs estimator on branch logs built from a known excess,
the branch plan (window, LR rules), the probe ramp (never above the measured B_crit, never
decreasing) and the SLURM array script (bash -n; hostile folder names stay data)."""

import json
import math
import shutil
import subprocess

import numpy as np
import pytest

from batchlaw.simulator.ramp import probe_schedule, segments
from batchlaw.simulator.rampspec import RampSpec
from batchlaw.tools.probe import ProbeSettings, estimate, plan_branches, user_window_samples

SEQ = 64


def _branch(k, base, window, start, excess, rng, noise=0.05):
    """Columns of a branch at batch k x base whose loss exceeds the reference's by excess(k), with per-
    sequence noise shared between branches (same sequences, same order)."""
    seq_noise = rng.normal(0, noise * 4, window)  # per sequence, identical in every branch
    b = k * base
    n = window // b
    tokens = start + SEQ * b * np.arange(1, n + 1)
    base_curve = 3.0 - 0.2 * (tokens - start) / (window * SEQ)
    own = np.random.default_rng([k, int(rng.integers(1 << 30))]).normal(0, 0.01, n)  # this branch's trajectory
    loss = base_curve + excess * (tokens - start) / (window * SEQ) + own + np.array(
        [seq_noise[i * b:(i + 1) * b].mean() for i in range(n)])
    return {"tokens": tokens.astype(float), "loss": loss, "global_batch_size": np.full(n, float(b))}


def _branches(excess_of, seeds=(1,), base=4, window=4096, start=10_000):
    out = {}
    for s in seeds:
        rng = np.random.default_rng(s)
        state = rng.bit_generator.state
        per = {}
        for k in (1, 2, 4, 8, 16):
            rng.bit_generator.state = state  # the same sequences in every branch of a seed
            per[k] = _branch(k, base, window, start, excess_of(k), rng)
        out[s] = per
    return out


def test_estimate_finds_the_crossing_of_a_known_excess():
    # excess grows linearly in log2 k: 0, 0.01, 0.02, 0.04, 0.08 nats; tolerance 1% of ~2.85 = 0.0285
    ex = {1: 0.0, 2: 0.01, 4: 0.02, 8: 0.04, 16: 0.08}
    s = ProbeSettings(tolerance=0.01, tail=0.25)
    e = estimate(_branches(ex.get), step=100, tokens_at=10_000, base_batch=4, window_tokens=4096 * SEQ, settings=s)
    assert e.largest_within == 16  # batch 4 x 4 is the last within tolerance
    assert 16 < e.b_crit < 32 and e.lo <= e.b_crit <= e.hi and not e.bound
    # the excess grows linearly over the window: its mean over the last quarter is 7/8 of the end value
    assert e.excess[1:] == pytest.approx([0.875 * v for v in (0.01, 0.02, 0.04, 0.08)], abs=0.005)
    assert all(se < 0.01 for se in e.excess_se)  # paired differences remove the shared sequence noise (0.2/step)


def test_no_crossing_is_a_bound_and_two_seeds_agree():
    s = ProbeSettings(tolerance=0.05, seeds=(1, 2))
    e = estimate(_branches(lambda k: 0.001 * k, seeds=(1, 2)), step=1, tokens_at=10_000, base_batch=4,
                 window_tokens=4096 * SEQ, settings=s)
    assert e.bound == ">=" and e.b_crit == 64 and math.isinf(e.hi)
    ex = {1: 0.0, 2: 0.01, 4: 0.02, 8: 0.04, 16: 0.08}
    one = estimate(_branches(ex.get, seeds=(1,)), step=1, tokens_at=10_000, base_batch=4, window_tokens=4096 * SEQ,
                   settings=ProbeSettings())
    two = estimate(_branches(ex.get, seeds=(2,)), step=1, tokens_at=10_000, base_batch=4, window_tokens=4096 * SEQ,
                   settings=ProbeSettings())
    # reproducible within the interval: the two seeds' 80% intervals overlap (each point estimate lies
    # within the other's interval only with probability ~0.64 even for exact intervals)
    assert max(one.lo, two.lo) <= min(one.hi, two.hi) and abs(one.b_crit - two.b_crit) < 0.25 * one.b_crit


def test_plan_window_and_lr_rules():
    for rule, k16 in (("sqrt", 0.04), ("linear", 0.16), ("none", 0.01)):
        s = ProbeSettings(lr_rule=rule, window_tokens=30_000)
        w = user_window_samples(s, 4, SEQ)
        assert w % 64 == 0 and w * SEQ >= 30_000 and (w - 64) * SEQ < 30_000  # rounded up to k_max x B
        ck = [{"path": "/x/step_00000100", "step": 100, "consumed": 400, "batch": 4, "lr": 0.01, "window_samples": w,
               "num_seeds": 3}]
        plans = plan_branches(ck, s, seq_len=SEQ, base_seed=7)
        assert [p.batch for p in plans[:5]] == [4, 8, 16, 32, 64] and plans[4].lr == pytest.approx(k16)
        assert all(p.num_steps * p.batch == p.window_samples == w for p in plans)
        assert [p.seed for p in plans[::5]] == [7, 8, 9]  # the plan's seeds: the base run's, then the next ones
    assert {p.seed for p in plan_branches(ck, ProbeSettings(seeds=(0, 11)), seq_len=SEQ, base_seed=7)} == {7, 11}
    with pytest.raises(ValueError, match="--factors"):
        ProbeSettings(factors=(2, 4))
    with pytest.raises(ValueError, match="--tolerance"):
        ProbeSettings(tolerance=float("nan"))


def test_noise_plan_sizes_seeds_and_window_from_the_scatter_and_the_prior():
    from batchlaw.tools.probe_plan import NoisePrior, plan_noise, step_scatter

    rng = np.random.default_rng(0)
    trend = np.linspace(4.0, 3.0, 2000)  # a falling loss: its plain std would be ~0.35
    assert step_scatter(trend + rng.normal(0, 0.2, 2000)) == pytest.approx(0.2, rel=0.05)
    prior = NoisePrior(seed_spread=0.006, pairing=0.04)
    args = dict(sigma_step=0.2, loss=2.5, base_batch=8, k_max=16, tail=0.25, tolerance=0.01, precision=0.5,
                prior=prior)
    p = plan_noise(**args)
    # by hand: tau = 0.015, target 0.0125; the shortest window (4 tail steps of batch 128: 2,048 sequences,
    # n_1 = 64) leaves 0.04 x 2 x 0.04 / 64 = 5e-5 of per-step variance: sd 0.01658 per seed; 4 seeds give
    # t(3) 1.638 x 0.01658 / 2 = 0.0136 (too wide), 5 seeds 1.533 x 0.01658 / sqrt(5) = 0.0114; 4 seeds would
    # need an 8x window (cost 32 against 5)
    assert (p.num_seeds, p.window_samples, p.reached) == (5, 2048, True)
    assert p.half_width == pytest.approx(0.01137, rel=2e-3) and p.target == pytest.approx(0.0125)
    # the old default (one seed, 8 steps of the largest batch) is too short for the noise, and says so
    old = plan_noise(**args, num_seeds=1, window_samples=1024)
    assert not old.reached and old.half_width == pytest.approx(1.2816 * math.sqrt(1e-4 + 2.25e-4), rel=2e-3)
    assert "MISSES" in old.line(SEQ)
    # two seeds cannot reach the target (t(1) = 3.08); the window must not grow 64x for what it cannot buy:
    # the cheapest within 10% of the best reachable: 3.078 x sqrt(tau^2 / 2) = 0.0327 at any window; the
    # shortest gives 3.078 x sqrt(2.75e-4 / 2) = 0.0361 (> 1.1 x 0.0327), twice it 0.0344
    two = plan_noise(**args, num_seeds=2)
    assert not two.reached and two.window_samples == 4096 and two.half_width == pytest.approx(0.0344, rel=2e-3)


def test_probe_ramp_never_exceeds_the_measured_critical_batch(tmp_path):
    tokens, b_crit = [1e4, 5e4, 1e5, 2e5], [10.0, 40.0, 30.0, 120.0]  # a dip: the ramp must respect it
    thr, batches = probe_schedule(tokens, b_crit, start=4, final=64)
    assert thr[0] == 0 and batches == (4, 8, 16, 32, 64) and list(thr) == sorted(thr)
    safe = np.minimum.accumulate(np.array(b_crit)[::-1])[::-1]
    for t, b in zip(thr[1:], batches[1:]):
        assert b <= np.interp(t, tokens, safe) + 1e-9  # at its start the new batch is under the safe curve
    path = tmp_path / "probe.json"
    path.write_text(json.dumps({"estimates": [{"tokens": t, "b_crit": b} for t, b in zip(tokens, b_crit)]}))
    ramp = RampSpec.from_config({"shape": "probe", "probe": str(path), "start": 4}).bind(global_batch=64, granularity=2,
                                                                                       seq_len=SEQ)
    seen = [b for b, _, _ in segments(ramp, 10_000)]
    assert seen == sorted(seen) and seen[0] == 4 and seen[-1] == 64
    with pytest.raises(ValueError, match="train.ramp.probe"):
        RampSpec.from_config({"shape": "probe", "probe": str(tmp_path / "nope.json")})


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_slurm_array_script_quotes_folders(tmp_path):
    from batchlaw.tools.probe_cmd import _slurm_script

    dirs = [tmp_path / "a b" / "k01", tmp_path / "$(touch PWNED)" / "k02"]
    script = tmp_path / "probe.sbatch"
    script.write_text(_slurm_script(dirs, 1))
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    assert "#SBATCH --array=0-1" in script.read_text()
    with pytest.raises(ValueError, match="control characters"):
        _slurm_script([tmp_path / "x\ntouch PWNED"], 1)


def _fake_base(tmp_path):
    """A base run log (written by the project's writer) with a checkpoint folder; no training."""
    from batchlaw.plugin.h5log import RunLogWriter
    from batchlaw.simulator import config as _config
    from batchlaw.simulator.runconfig import load_run_config
    from batchlaw.simulator.spec import CONFIG_ROOT

    run = tmp_path / "base"
    cfg = load_run_config(CONFIG_ROOT / "runs" / "tiny-cpu.toml",
                          ["model.name=demo-xs", "train.global_batch=4", f"checkpoint.dir={run / 'ckpt'}"])
    w = RunLogWriter(run / "log.h5", attrs={"config": {**_config.to_dict(cfg), "_device": "cpu"}, "seq_len": SEQ,
                                             "layout": {"world_size": 1}}, flush_every=8)
    for s in range(1, 21):
        w.append({"step": s, "consumed_samples": 4 * s, "tokens": 4 * s * SEQ, "global_batch_size": 4, "lr": 0.01,
                  "loss": 3.0, "gns_g2": 1.0, "gns_trace": 10.0})
    w.close()
    for step in (10, 20):
        (run / "ckpt" / f"step_{step:08d}").mkdir(parents=True)
        (run / "ckpt" / f"step_{step:08d}" / "meta.json").write_text(json.dumps({"step": step, "layout": {}}))
        (run / "ckpt" / f"step_{step:08d}" / "rank_00000.pt").write_bytes(b"x")
    return run


def test_plan_and_slurm_render_valid_branch_configs(tmp_path, capsys):
    from batchlaw.simulator.runconfig import load_run_config
    from batchlaw.tools.cli import main

    run = _fake_base(tmp_path)
    assert main(["probe-cbs", str(run), "--plan-only", "--factors", "1,2,4", "--seeds", "0"]) == 0
    out = capsys.readouterr().out
    assert "2 checkpoint(s) x 3 factors = 6 branches" in out and "GPU-hours" in out
    assert "noise plan: 1 seed(s)" in out and "MISSES" in out  # one seed cannot measure the between-seed part
    assert main(["probe-cbs", str(run), "--plan-only", "--factors", "1,2,4"]) == 0
    assert "noise plan: 5 seed(s) x 16,384-token window" in capsys.readouterr().out  # loss 3.0, flat: tau only
    assert not (run / "probe").exists()  # --plan-only writes nothing
    assert main(["probe-cbs", str(run), "--checkpoints", "20", "--factors", "1,2,4", "--slurm",
                 str(tmp_path / "p.sbatch"), "--lr-rule", "linear", "--seeds", "0"]) == 0
    branch = run / "probe" / "branches" / "step00000020" / "k04" / "seed1234"
    cfg = load_run_config(branch / "run.toml")  # the trainer's own loader accepts it
    assert cfg.train.global_batch == 16 and cfg.train.lr == pytest.approx(0.04) and cfg.train.decay == "constant"
    # the shortest planned window: 4 steps of the largest batch (16) in the last quarter
    assert cfg.total_samples() == 20 * 4 + 16 * 16 and cfg.checkpoint.dir == str(branch / "ckpt")
    assert (branch / "ckpt" / "step_00000020" / "meta.json").is_file()  # the checkpoint it resumes from
    assert "#SBATCH --array=0-2" in (tmp_path / "p.sbatch").read_text()
    assert main(["probe-cbs", str(run), "--checkpoints", "15"]) == 2
    assert "available checkpoint steps are 10, 20" in capsys.readouterr().err


def test_relative_paths_of_the_base_run_are_anchored_where_its_ranks_started(tmp_path):
    """Session-5 audit: a probe started in another folder resolved the base run's relative checkpoint.dir
    there and branched from another run's checkpoints (same relative layout)."""
    from batchlaw.tools.probe_cmd import _anchor_paths

    cfg = {"checkpoint": {"dir": "runs/a/ckpt"}, "data": {"path": "/abs/corpus", "kind": "indexed"}, "train": {}}
    _anchor_paths(cfg, str(tmp_path / "launch"))
    assert cfg["checkpoint"]["dir"] == str(tmp_path / "launch" / "runs/a/ckpt")
    assert cfg["data"]["path"] == "/abs/corpus"
    old = {"checkpoint": {"dir": "runs/a/ckpt"}, "data": {"path": ""}}
    _anchor_paths(old, "")  # a log written before cwd was recorded: unchanged
    assert old["checkpoint"]["dir"] == "runs/a/ckpt" and old["data"]["path"] == ""


def test_probe_refuses_duplicate_branches_and_another_world_size(tmp_path, capsys):
    """Session-5 audit: --factors 1,1,2 made two branches share a folder (they raced), and a world size other
    than the base run's failed inside the branch with a traceback."""
    from batchlaw.tools.cli import main

    assert main(["probe-cbs", str(tmp_path / "nolog"), "--factors", "1,1,2", "--plan-only"]) == 2
    assert "--factors = 1,1,2: a value twice" in capsys.readouterr().err


@pytest.mark.parametrize("factors", ["1,1e11", "1,100000000000", "1,2048", "1,0", "1,2.5"])
def test_out_of_range_factors_are_one_line_errors(tmp_path, capsys, factors):
    """Issue 21: --factors 1,1e11 was accepted (a reference branch of 8e11 steps was planned)."""
    from batchlaw.tools.cli import main

    assert main(["probe-cbs", str(tmp_path / "nolog"), "--factors", factors, "--plan-only"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"--factors = '{factors}'" in err and "1..1024" in err


def test_report_row_says_not_determined_instead_of_a_number(tmp_path):
    """Issue 19: a probe whose data are not monotone within noise must not print a B_crit in the report."""
    from batchlaw.tools.report import probe_section

    row = {"step": 361, "tokens": 184_832, "base_batch": 8, "b_crit": None, "lo": None, "hi": None, "bound": "",
           "determined": False, "reason": "not monotone within noise: the excess falls from +0.0230 at k = 4 to"
           " -0.0060 at k = 8 (4.1 standard errors)", "b_simple": 6.8, "b_simple_lo": 5.0, "b_simple_hi": 8.0}
    bound = {**row, "b_crit": 60.0, "lo": 60.0, "bound": ">=", "reason": "never crosses the tolerance up to k = 16:"
             " only a lower bound"}
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "probe.json").write_text(json.dumps({"estimates": [row, bound]}))
    lines = probe_section(tmp_path)
    assert "| 361 | 184,832 | 8 | not determined (not monotone within noise: the excess falls" in lines[-2]
    assert "| - [" not in lines[-2] and "; >= 60 |" in lines[-1]
