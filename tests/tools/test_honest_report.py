"""Tier (a), pure (h5py, numpy, matplotlib; no torch): the report never claims more than its data.

Logs are written by the project's own writer from a known loss basin (as in test_analysis.py): an
optimum at the edge of the sweep is a bound and stays out of the laws; one model size, or too few
bracketed sizes, print no law; a wide exponent interval prints "not determined"; counts are right;
unreadable and live (SWMR) logs are handled file by file.
"""

import subprocess
import sys
import textwrap

import numpy as np
import pytest

from batchlaw.plugin.h5log import RunLogWriter
from batchlaw.simulator.noisemodel import NoiseModel
from batchlaw.simulator.optimum import locate as _locate
from batchlaw.tools.analysis import analyse, fit_size_law
from batchlaw.tools.cli import main
from batchlaw.tools.logs import load_runs

SEQ = 64
# The worlds these logs are written from have a symmetric basin in ln B and one LR: the analysis is told so
# (no basin prior: a symmetric parabola) and that their final losses carry little seed noise.
SYMMETRIC_WORLD_NOISE = NoiseModel(seed_sd=2e-3, prior_dof=50, source="test world")
WIDE = 1.0  # these worlds are quadratic everywhere (no rim): every run lies in the fit window


def locate(*args, **kwargs):
    """The estimator on these rim-free worlds."""
    return _locate(*args, **{"fit_window": WIDE, **kwargs})


def _write(path, n, b, final, steps=60):
    cfg = {"model": {"name": f"m{int(n)}", "layers": 2, "hidden": 64, "heads": 4, "seq_len": SEQ},  # a valid RunSpec
           "train": {"tokens": 100000, "global_batch": b}}
    w = RunLogWriter(path, attrs={"config": cfg, "num_params": int(n), "model_name": f"m{int(n)}", "seq_len": SEQ},
                     flush_every=16)
    rng = np.random.default_rng(int(n) + b)
    for s in range(1, steps + 1):
        w.append({"step": s, "tokens": s * b * SEQ, "global_batch_size": b, "consumed_samples": s * b,
                  "loss": final + 1.0 / s, "gns_g2": 4 + rng.normal(0, 0.5), "gns_trace": 400 + rng.normal(0, 20),
                  "step_time_s": 1e-3, "tokens_per_s": 1.0})
    w.close()


def _sweep(d, n, batches, b_opt):
    for b in batches:
        _write(d / f"n{int(n)}_b{b}.h5", n, b, 2.0 + 0.05 * np.log(b / b_opt) ** 2)


def _report(d, tmp_path, *args):
    out = tmp_path / "rep"
    status = main(["analyze", str(d), "--out-dir", str(out), "--extrapolate", "1e9", *args])
    return status, (out / "report.md").read_text()


def test_edge_optimum_is_a_bound_and_no_law_is_printed(tmp_path):
    d = tmp_path / "logs"
    d.mkdir()
    for n in (1e5, 4e5, 1.6e6):  # the true optimum (batch 1) lies below every sweep
        _sweep(d, n, (4, 8, 16, 32), 1.0)
    res = analyse(load_runs(d), noise=SYMMETRIC_WORLD_NOISE, fit_window=WIDE)
    assert all(not o.bracketed and o.bound == "<=" and o.b_opt == 4 for o in res.optima)
    assert not res.b_opt_vs_n.fitted and "3 of 3 sizes have no bracketed optimum (at the edge" in res.b_opt_vs_n.reason
    status, text = _report(d, tmp_path)
    assert status == 0
    assert "| <= 4 (edge) |" in text and "none (bound)" in text
    assert "B_opt(N) = " not in text and "- B_opt(N): none. 0 sizes with a usable point" in text
    assert "no extrapolation to N = 1e+09" in text and "extrapolated to N" not in text
    status, text = _report(d, tmp_path, "--include-bounds")  # on request, bounds enter the fit, flagged
    assert "included in these fits at the user's request" in text


def test_one_model_size_prints_no_size_law(tmp_path):
    d = tmp_path / "logs"
    d.mkdir()
    _sweep(d, 2e5, (4, 8, 16, 32), 10.0)
    res = analyse(load_runs(d), noise=SYMMETRIC_WORLD_NOISE, fit_window=WIDE, extrapolate_n=7e9)
    assert len(res.optima) == 1 and res.optima[0].bracketed
    for law in (res.b_opt_vs_n, res.b_opt_vs_d, res.b_crit_vs_n):
        what = "token budget" if law.variable == "D" else "size"
        assert not law.fitted and law.reason.startswith(f"1 {what} with a usable point, a law needs 3")
    assert "b_opt" not in res.extrapolation
    status, text = _report(d, tmp_path)
    assert "4 runs (4 completed) of 1 model size;" in text
    assert "B_opt(N) = " not in text and "B_crit(N) = " not in text and "x N^" not in text


def test_two_bracketed_sizes_are_not_enough(tmp_path):
    d = tmp_path / "logs"
    d.mkdir()
    _sweep(d, 1e5, (4, 8, 16, 32), 10.0)
    _sweep(d, 4e5, (4, 8, 16, 32), 14.0)
    _sweep(d, 1.6e6, (4, 8, 16, 32), 1.0)  # edge
    res = analyse(load_runs(d), noise=SYMMETRIC_WORLD_NOISE, fit_window=WIDE)
    assert sum(o.bracketed for o in res.optima) == 2 and not res.b_opt_vs_n.fitted
    assert "2 sizes with a usable point" in res.b_opt_vs_n.reason and "1 of 3 sizes" in res.b_opt_vs_n.reason


def test_counts_are_singular_for_one_run(tmp_path):
    d = tmp_path / "logs"
    d.mkdir()
    _write(d / "one.h5", 1e5, 8, 2.0)
    status, text = _report(d, tmp_path)
    assert "1 run (1 completed) of 1 model size;" in text and "8 (one batch)" in text


def test_wide_exponent_interval_is_not_determined():
    # three sizes whose optima scatter: the exponent's interval is far wider than the limit
    law = fit_size_law("B_opt(N)", "N", [1e5, 4e5, 1.6e6], [10, 40, 12], [8, 30, 9], [12, 50, 15])
    assert law.fitted and not law.determined and "wider than 1" in law.reason
    tight = fit_size_law("B_opt(N)", "N", [1e5, 4e5, 1.6e6], [10, 17.4, 30.3], [9.5, 16.5, 28.8], [10.5, 18.3, 31.8])
    assert tight.determined and tight.exponent == pytest.approx(0.4, abs=0.01) and tight.n_points == 3
    lo, hi = tight.exponent_ci
    assert lo < 0.4 < hi and hi - lo < 0.2 and tight.r2 > 0.99


def test_locate_optimum_brackets_and_bounds():
    assert locate([4, 8, 16, 32], [1.3, 1.2, 1.1, 1.0], noise=SYMMETRIC_WORLD_NOISE, fit_window=WIDE).bound == ">="
    o = locate([4, 8, 16, 32, 64], [1.3, 1.1, 1.0, 1.1, 1.3], noise=SYMMETRIC_WORLD_NOISE, fit_window=WIDE)
    assert o.bracketed and 8 <= o.lo <= o.b <= o.hi <= 32 and o.b == pytest.approx(16, rel=0.05)


def test_bad_log_is_named_and_skipped(tmp_path, capsys):
    d = tmp_path / "logs"
    d.mkdir()
    for n in (1e5, 4e5, 1.6e6):
        _sweep(d, n, (4, 8, 16, 32), 0.3 * n**0.3)
    (d / "broken.h5").write_bytes(b"not hdf5 at all")
    import h5py

    with h5py.File(d / "nosteps.h5", "w") as f:
        f.attrs["schema_version"] = 1
    _write(d / "badattr.h5", 1e5, 4, 2.0)
    with h5py.File(d / "badattr.h5", "a") as f:
        f.attrs["config"] = '{"model": {"name": "m1'  # damaged JSON
    status, text = _report(d, tmp_path)
    err = capsys.readouterr().err
    assert status == 1  # report written, some logs skipped (documented in docs/analysis.md)
    assert "broken.h5: not a readable HDF5 file" in err and "nosteps.h5: no /steps group" in err
    assert "badattr.h5: not a readable batchlaw run log" in err
    assert "3 logs could not be read and were skipped" in text and "12 runs (12 completed) of 3 model sizes" in text
    assert main(["inspect", str(d / "nosteps.h5")]) == 2
    assert "nosteps.h5: no /steps group" in capsys.readouterr().err
    assert main(["inspect", str(d / "missing.h5")]) == 2
    assert "missing.h5: no such file" in capsys.readouterr().err


WRITER = textwrap.dedent('''
    import sys, time, h5py, numpy as np
    swmr = sys.argv[2] == "swmr"
    f = h5py.File(sys.argv[1], "w", libver="latest" if swmr else "earliest")
    f.attrs["schema_version"] = 1
    f.attrs["status"] = "running"
    f.attrs["num_params"] = 1000
    f.attrs["model_name"] = "live"
    g = f.create_group("steps")
    f.create_group("events")
    cols = {k: g.create_dataset(k, shape=(0,), maxshape=(None,), dtype="f8", chunks=(64,))
            for k in ("step", "tokens", "global_batch_size", "loss")}
    if swmr:
        f.swmr_mode = True
    for k, ds in cols.items():
        ds.resize((10,))
        ds[:] = np.arange(1, 11) if k == "step" else 1.0
        ds.flush()
    f.flush()
    print("ready", flush=True)
    sys.stdin.readline()
''')


@pytest.mark.parametrize("mode", ["swmr", "plain"])
def test_live_log_is_readable(tmp_path, capsys, mode):
    """A writer in another process holds the file open (SWMR, or a plain writer holding the lock)."""
    path = tmp_path / "live.h5"
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path), mode], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        assert main(["inspect", str(path)]) == 0
        out = capsys.readouterr().out
        assert "rows: 10, steps 1..10" + (" (live: SWMR)" if mode == "swmr" else "") in out
        runs = load_runs(path)
        assert runs[0].status == "running" and runs[0].steps == 10
    finally:
        proc.stdin.close()
        proc.wait(timeout=30)


def test_optimum_interval_grows_with_the_loss_noise():
    b, loss = [2, 4, 8, 16], [2.74, 2.67, 2.72, 2.76]
    quiet = NoiseModel(seed_sd=1e-3, prior_dof=1e4)
    tight = locate(b, loss, loss_se=[0.002] * 4, noise=quiet)
    loose = locate(b, loss, loss_se=[0.01] * 4, noise=quiet)
    seeds = locate(b, loss, loss_se=[0.002] * 4, noise=NoiseModel(seed_sd=0.01, prior_dof=1e4))
    assert tight.method.startswith("parametric bootstrap 80%") and tight.bracketed and loose.bracketed
    assert 2 <= loose.lo <= tight.lo <= tight.b <= tight.hi <= loose.hi <= 8
    assert seeds.hi / seeds.lo > tight.hi / tight.lo  # the between-seed noise widens it too


def _write_plain(path, n, batch_at, final, trace, steps=60, ramp=None):
    """A run with exact noise-scale inputs (|G|^2 = 4, tr(Sigma) = ``trace``: B_simple = trace / 4), the global
    batch ``batch_at(step)`` and, for a ramp run, the ``train.ramp`` its config logs."""
    cfg = {"model": {"name": f"m{int(n)}", "layers": 2, "hidden": 64, "heads": 4, "seq_len": SEQ},
           "train": {"tokens": 100000, "global_batch": batch_at(steps), **({"ramp": ramp} if ramp else {})}}
    w = RunLogWriter(path, attrs={"config": cfg, "num_params": int(n), "model_name": f"m{int(n)}", "seq_len": SEQ},
                     flush_every=16)
    samples = 0
    for s in range(1, steps + 1):
        samples += batch_at(s)
        w.append({"step": s, "tokens": samples * SEQ, "global_batch_size": batch_at(s), "consumed_samples": samples,
                  "loss": final + 1.0 / s, "gns_g2": 4.0, "gns_trace": trace, "step_time_s": 1e-3, "tokens_per_s": 1.0})
    w.close()


def test_b_simple_end_is_the_median_of_the_sweeps_constant_batch_runs(tmp_path):
    """The report's per-size "B_simple (end)" was an undocumented median over every run of the size, the batch-ramp
    run included. It is now the median over the sweep's constant-batch runs (the points of its B_opt), with their
    range: here runs at batch 4 and 8 with B_simple 100 and 150, and a ramp 4 -> 8 with 1000."""
    d = tmp_path / "logs"
    d.mkdir()
    _write_plain(d / "b4.h5", 1e5, lambda s: 4, 2.10, 400.0)
    _write_plain(d / "b8.h5", 1e5, lambda s: 8, 2.00, 600.0)
    _write_plain(d / "ramp.h5", 1e5, lambda s: 4 if s <= 30 else 8, 2.05, 4000.0,
                 ramp={"shape": "staircase", "start": 4, "incr": 4, "ramp_samples": 120})
    status, text = _report(d, tmp_path)
    assert status == 0 and "| staircase -> 8 |" in text  # the ramp run is listed with the runs
    row = next(line for line in text.splitlines() if line.startswith("| m100000 | 100,000 | ") and "| 4, 8 |" in line)
    assert "| 125 [100, 150] |" in row, row
    assert "**B_simple (end)** of a batch sweep: the median of B_simple over the sweep's constant-batch runs" in text


def test_a_law_whose_exponent_interval_includes_zero_shows_no_size_dependence(tmp_path):
    """B_simple is the same at every size here, so the B_crit(N) exponent's interval includes 0: it was printed as a
    law ("B_crit(N) = ...") and not drawn. Text, picture description and legend now all say "no size dependence
    shown", and the fit is drawn dashed."""
    import matplotlib.legend

    from batchlaw.tools import plots
    from batchlaw.tools.report import describe_pictures

    d = tmp_path / "logs"
    d.mkdir()
    for n in (1e5, 4e5, 1.6e6):
        _sweep(d, n, (4, 8, 16, 32), 10.0)
    runs = load_runs(d)
    res = analyse(runs, noise=SYMMETRIC_WORLD_NOISE, fit_window=WIDE)
    lo, hi = res.b_crit_vs_n.exponent_ci
    assert res.b_crit_vs_n.determined and lo < 0 < hi  # the situation under test
    status, text = _report(d, tmp_path)
    assert "B_crit(N) = " not in text
    assert f"- B_crit(N): no size dependence shown: the exponent's 80% interval {lo:.3f} .. {hi:.3f} includes 0." in text
    assert "B_crit(N), shows no" not in text and "B_crit ~" not in text
    described = describe_pictures(runs, res)["bopt_vs_n.png"]
    assert "no size dependence shown: its exponent interval includes 0" in described
    fig = plots.plot_bopt_vs_n(res, runs, tmp_path / "b.png")
    labels = [t.get_text() for leg in fig.axes[0].findobj(matplotlib.legend.Legend) for t in leg.get_texts()]
    assert any(t.startswith("B_crit(N): fit N^") and "no size dependence shown" in t for t in labels), labels


def test_the_loss_against_batch_picture_draws_each_final_loss_with_its_interval(tmp_path):
    """The final-loss picture had no error bars although the analysis has each run's final-loss standard error
    (and the bracketing rule uses it): each point now carries its 80% interval, +-1.28 sd of its noise about the
    basin, within-run and between-seed (issue 19: the per-step error alone hid the seed-to-seed spread)."""
    from batchlaw.tools import plots
    from batchlaw.tools.analysis import Z80

    d = tmp_path / "logs"
    d.mkdir()
    _sweep(d, 1e5, (4, 8, 16, 32), 10.0)
    runs = load_runs(d)
    res = analyse(runs, noise=SYMMETRIC_WORLD_NOISE, fit_window=WIDE)
    noise = res.settings["noise_model"]
    fig = plots.plot_final_loss_vs_batch(res, runs, tmp_path / "f.png")
    drawn = {}
    for c in fig.axes[0].containers:
        (x0, y0), (_, y1) = c.lines[2][0].get_segments()[0]
        drawn[round(x0)] = (y0, y1)
    assert sorted(drawn) == [4, 8, 16, 32]
    for r in runs:
        assert r.final_loss_se > 0
        y0, y1 = drawn[r.global_batch]
        sd = float(noise.run_sd([r.final_loss_se])[0])
        assert sd > r.final_loss_se
        assert y0 == pytest.approx(r.final_loss - Z80 * sd) and y1 == pytest.approx(r.final_loss + Z80 * sd)
