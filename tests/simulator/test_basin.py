"""Tier (a), pure: the loss basin over ln batch x ln LR (simulator/basin.py) and its fit (simulator/fit_basin.py).

Interface properties, a hand-derived optimum, recovery of known parameters from synthetic sweeps with
noise (two seeds), the shipped preset against the batch shifts measured in Step Law's data, and one-line
errors for bad TOML and bad arguments.
"""

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest

from batchlaw.simulator import laws, presets, resources
from batchlaw.simulator.basin import SHAPE, Basin, BasinFit, fit_basin, load_basin
from batchlaw.simulator.fits import FitWarning

ROUND = Basin(a_below=0.01, a_above=0.01, c_below=0.02, c_above=0.02, ridge=0.5)
KINKED = Basin(a_below=0.014, a_above=0.012, c_below=0.012, c_above=0.023, ridge=0.69, ridge_above=0.07)


def test_excess_is_nonnegative_vectorised_and_zero_at_the_optimum():
    u, w = np.meshgrid(np.linspace(-3, 3, 41), np.linspace(-3, 3, 37))
    for b in (ROUND, KINKED):
        e = b.excess(u, w)
        assert e.shape == u.shape and np.all(e >= 0)
        assert b.excess(0.0, 0.0) == 0.0
        assert np.all(e[(u != 0) | (w != 0)] > 0)
        assert b.excess(np.array([-1.0, 1.0]), 0.0).shape == (2,)  # broadcasts


def test_ridge_is_the_valley_of_the_lr_direction():
    # along lr_opt(B) the excess is the batch term alone; the ridge slope is ridge below B_opt, ridge_above above
    u = np.array([-2.0, -0.5, 0.5, 2.0])
    w = np.log(KINKED.lr_ratio_at(u))
    np.testing.assert_allclose(w, [-2 * 0.69, -0.5 * 0.69, 0.5 * 0.07, 2 * 0.07])
    np.testing.assert_allclose(KINKED.excess(u, w), [0.014 * 4, 0.014 * 0.25, 0.012 * 0.25, 0.012 * 4])
    np.testing.assert_allclose(ROUND.lr_ratio_at(u), np.exp(0.5 * u))
    for b in (ROUND, KINKED):  # and it is the best LR at every batch
        for uu in u:
            ws = np.log(b.lr_ratio_at(uu)) + np.linspace(-0.5, 0.5, 11)
            assert np.argmin(b.excess(uu, ws)) == 5


def test_b_opt_ratio_hand_derived():
    # Symmetric basin: d/du [a u^2 + c (w - r u)^2] = 0 gives u = c r w / (a + c r^2). With a = 0.01,
    # c = 0.02, r = 0.5 and w = -ln 8: u = -0.01 ln 8 / 0.015 = -(2/3) ln 8 = -ln 4, so the ratio is 1/4.
    assert ROUND.b_opt_ratio(-math.log(8)) == pytest.approx(0.25, rel=1e-12)
    assert ROUND.b_opt_ratio(0.0) == 1.0 and KINKED.b_opt_ratio(0.0) == 1.0
    # No ridge: the batch optimum does not move with the LR.
    assert dataclasses.replace(ROUND, ridge=0.0).b_opt_ratio(-2.0) == 1.0


@pytest.mark.parametrize("seed", [0, 1])
def test_b_opt_ratio_is_the_minimum_over_batches(seed):
    rng = np.random.default_rng(seed)
    us = np.linspace(-6, 6, 120001)
    for _ in range(20):
        a, c = rng.uniform(0.002, 0.05, 2), rng.uniform(0.002, 0.05, 2)
        b = Basin(a_below=a[0], a_above=a[1], c_below=c[0], c_above=c[1], ridge=rng.uniform(-0.2, 1.2),
                  ridge_above=rng.uniform(-0.3, 1.0))
        for w in rng.uniform(-3, 3, 4):
            brute = us[np.argmin(b.excess(us, w))]
            assert b.u_opt_at(w) == pytest.approx(brute, abs=2e-4)
            assert b.excess(b.u_opt_at(w), w) <= b.excess(brute, w) + 1e-15


def test_lower_lr_wants_a_smaller_batch():
    ws = np.linspace(-3, 0, 13)
    for b in (ROUND, KINKED):
        r = [b.b_opt_ratio(w) for w in ws]
        assert np.all(np.diff(r) >= 0) and r[0] < 1


def test_at_scales_the_shape_with_tokens_per_parameter_and_size():
    assert ROUND.at(1e9, 3e10) == ROUND and ROUND.scale_free
    b = dataclasses.replace(KINKED, a_below_tpp=-0.5, ridge_tpp=0.1, c_above_n=-1.0, ridge_above_n=0.2)
    assert not b.scale_free
    s = b.at(b.n_ref, 4 * b.tpp_ref * b.n_ref)  # 4x the reference tokens per parameter
    assert s.a_below == pytest.approx(0.014 / 2) and s.ridge == pytest.approx(0.69 + 0.1 * math.log(4))
    assert (s.a_above, s.c_above, s.ridge_above) == (0.012, 0.023, 0.07) and s.scale_free
    s = b.at(2 * b.n_ref, 2 * b.tpp_ref * b.n_ref)  # 2x the reference size, same tokens per parameter
    assert s.c_above == pytest.approx(0.023 / 2) and s.ridge_above == pytest.approx(0.07 + 0.2 * math.log(2))
    with pytest.raises(ValueError, match=r"^n_params = 0: must be a positive finite number$"):
        b.at(0, 1e9)
    with pytest.raises(ValueError, match=r"^tokens = nan: must be a positive finite number$"):
        b.at(1e9, float("nan"))


def test_dict_round_trip_and_law_registry():
    d = KINKED.to_dict()
    assert d["kind"] == "basin" and Basin.from_dict(d) == KINKED
    assert Basin.from_dict(json.loads(json.dumps(d))) == KINKED
    assert "ridge_above" not in ROUND.to_dict() and Basin.from_dict(ROUND.to_dict()) == ROUND
    assert laws.law_from_dict(d) == KINKED  # the same registry as every law preset


def test_shipped_preset_loads_and_reproduces_the_measured_lr_bias():
    b = load_basin("steplaw-basin")
    assert b == presets.load_preset("steplaw-basin") == laws.load_law("steplaw-basin")
    assert "Li et al. 2025" in b.citation and "bench_basin.py" in b.citation and b.noise_sd > 0
    # Issue 19, measured on data/steplaw/dense_lr_bs_loss.csv (Li et al. 2025): the batch with the lowest
    # loss at an LR 8x below a cell's best is 2-4x smaller than at the best LR, and 1.3-2x smaller at 3x below,
    # over cells of 19 to 466 tokens per parameter.
    for tpp in (19, 50, 100, 466):
        cell = b.at(5e8, 5e8 * tpp)
        assert 1 / 4 <= cell.b_opt_ratio(-math.log(8)) <= 1 / 2, tpp
        assert 1 / 2 <= cell.b_opt_ratio(-math.log(3)) <= 1 / 1.3, tpp
    assert "steplaw-basin" not in presets.loss_preset_names()


def _write(tmp_path, text, name="b.toml"):
    p = tmp_path / name
    p.write_text(text)
    return p


GOOD = "kind = \"basin\"\na_below = 0.01\na_above = 0.01\nc_below = 0.02\nc_above = 0.02\nridge = 0.5\n"


@pytest.mark.parametrize("text, message", [
    (GOOD + "gamma = 1\n", r"^b\.gamma: unknown key; valid keys are a_above, a_above_n, a_above_tpp, a_below, "),
    (GOOD.replace("ridge = 0.5\n", ""), r"^b\.ridge: required key is missing$"),
    (GOOD.replace("a_below = 0.01", "a_below = -0.01"), r"^basin\.a_below = -0\.01: must be >= 0$"),
    (GOOD.replace("a_below = 0.01", "a_below = \"steep\""), r"^b\.a_below = 'steep': expected float$"),
    (GOOD.replace("ridge = 0.5", "ridge = nan"), r"^basin\.ridge = nan: must be a finite number$"),
    (GOOD + "tpp_ref = 0\n", r"^basin\.tpp_ref = 0\.0: must be > 0$"),
    (GOOD + "ridge_above_tpp = 0.1\n", r"^basin\.ridge_above_tpp = 0\.1: needs ridge_above to be set$"),
    (GOOD.replace("kind = \"basin\"", "kind = \"power\""), r"has kind = 'power', not 'basin'$"),
    (GOOD + "ridge = [\n", r"^config file .*b\.toml"),
])
def test_bad_toml_is_one_line(tmp_path, text, message):
    with pytest.raises(ValueError, match=message) as err:
        load_basin(str(_write(tmp_path, text)))
    assert "\n" not in str(err.value)


def test_load_by_path_name_and_wrong_kind(tmp_path):
    assert load_basin(str(_write(tmp_path, GOOD + "noise_sd = 0.004\n"))) == dataclasses.replace(ROUND, noise_sd=0.004)
    with pytest.raises(ValueError, match=r"^basin = 'no-such-basin': unknown; presets are .*steplaw-basin"):
        load_basin("no-such-basin")
    with pytest.raises(ValueError, match=r"^basin = 'steplaw-lr': .* has kind = 'power', not 'basin'$"):
        load_basin("steplaw-lr")
    with pytest.raises(ValueError, match=r"^basin\.kind = 'power': a basin has kind = 'basin'$"):
        Basin.from_dict({**ROUND.to_dict(), "kind": "power"})


# -- the fit -----------------------------------------------------------------------------------------

TRUE = Basin(a_below=0.014, a_above=0.011, c_below=0.012, c_above=0.023, ridge=0.69, ridge_above=0.07,
             a_below_tpp=-0.4, c_below_tpp=-0.2, ridge_tpp=0.03)
SEQ = 2048


def _sweep(basin: Basin, seed: int, noise: float):
    """A Step-Law-like sweep: 6 cells (19..470 tokens/param), batches x LRs on their grids, true optima known."""
    rng = np.random.default_rng(seed)
    cells = [(2e8, 4e9), (2e8, 2e10), (2e8, 9.4e10), (5e8, 1e10), (5e8, 5e10), (1e9, 2e10)]
    rows, truth = [], []
    for n, d in cells:
        b_opt = 0.58 * d ** 0.571 * rng.uniform(0.8, 1.25)   # Step Law B_opt(D) (Li et al. 2025), jittered
        lr_opt = 1.79 * n ** -0.713 * d ** 0.307 * rng.uniform(0.8, 1.25)
        l_opt = 2.0 + 400 / n ** 0.34 + 400 / d ** 0.28   # any smooth L(N, D)
        truth.append((b_opt, lr_opt, l_opt))
        shape = basin.at(n, d)
        for bs in (16, 32, 64, 96, 128, 192, 256, 352, 512, 736, 1024, 2048):
            for k in range(-24, -10):
                lr = 2.0 ** (k / 2)
                loss = l_opt + shape.excess(np.log(bs * SEQ / b_opt), np.log(lr / lr_opt)) + rng.normal(0, noise)
                rows.append((n, d, bs * SEQ, lr, loss))
    return np.array(rows).T, np.array(truth)


@pytest.mark.parametrize("seed", [0, 1])
def test_fit_recovers_a_known_basin_with_noise(seed):
    (n, d, b, lr, loss), truth = _sweep(TRUE, seed, noise=0.002)
    f = fit_basin(n, d, b, lr, loss, max_excess=0.05, scale=("tpp",))
    assert isinstance(f, BasinFit) and f.success and len(f.cells["N"]) == 6
    for k in ("a_below", "a_above", "c_below", "c_above"):
        assert getattr(f.basin, k) == pytest.approx(getattr(TRUE, k), rel=0.15), k
    assert f.basin.ridge == pytest.approx(0.69, abs=0.06) and f.basin.ridge_above == pytest.approx(0.07, abs=0.06)
    assert f.basin.a_below_tpp == pytest.approx(-0.4, abs=0.1) and f.basin.c_below_tpp == pytest.approx(-0.2, abs=0.1)
    np.testing.assert_allclose(f.cells["B_opt_tokens"], truth[:, 0], rtol=0.15)
    np.testing.assert_allclose(f.cells["lr_opt"], truth[:, 1], rtol=0.15)
    np.testing.assert_allclose(f.cells["L_opt"], truth[:, 2], atol=0.003)
    assert f.residual_sd == pytest.approx(0.002, rel=0.15) and f.basin.noise_sd == f.residual_sd
    assert f.residual_sd_near == pytest.approx(0.002, rel=0.3)
    assert f.dof == f.n_points - (3 * 6 + 6 * 2) and f.used.size == f.residuals.size == f.n_points
    for tpp in (20, 100):  # the planner's question: how far B_opt moves at an LR 8x low
        assert f.basin.at(1e9, 1e9 * tpp).b_opt_ratio(-math.log(8)) == pytest.approx(
            TRUE.at(1e9, 1e9 * tpp).b_opt_ratio(-math.log(8)), rel=0.12)


def test_fixed_shape_fits_only_the_optima_and_a_straight_ridge_is_one_slope():
    (n, d, b, lr, loss), truth = _sweep(TRUE, 2, noise=0.001)
    f = fit_basin(n, d, b, lr, loss, shape=TRUE)
    assert f.basin == dataclasses.replace(TRUE, noise_sd=f.residual_sd)
    assert f.dof == f.n_points - 3 * 6
    np.testing.assert_allclose(f.cells["B_opt_tokens"], truth[:, 0], rtol=0.06)
    s = fit_basin(n, d, b, lr, loss, ridge_kink=False)
    assert s.basin.ridge_above is None and s.residual_sd > 1.5 * f.residual_sd  # the kink is real in this world


def test_bootstrap_intervals_cover_the_truth():
    (n, d, b, lr, loss), _ = _sweep(TRUE, 3, noise=0.002)
    f = fit_basin(n, d, b, lr, loss, scale=("tpp",), bootstrap=8, bootstrap_over="runs", seed=1)
    assert set(f.ci) == set(f.boot) == {k for k in SHAPE} | {f"{k}_tpp" for k in SHAPE}
    assert all(len(v) == 8 for v in f.boot.values())
    lo, hi = f.ci["ridge"]
    assert lo < hi and lo - 0.05 < 0.69 < hi + 0.05


def test_fit_errors_are_one_line():
    (n, d, b, lr, loss), _ = _sweep(ROUND, 0, noise=0.001)
    cases = [({"max_excess": 0}, r"^max_excess = 0: must be a positive number of nats$"),
             ({"scale": ("tokens",)}, r"^scale = \['tokens'\]: 'tokens' is unknown or repeated; allowed are tpp, n$"),
             ({"bootstrap": -1}, r"^bootstrap = -1: must be a whole number >= 0$"),
             ({"bootstrap_over": "seeds"}, r"^bootstrap_over = 'seeds': allowed are cells, runs$"),
             ({"max_excess": 1e-9}, r"^fit_basin: no \(N, D\) cell has 6 runs over 3 batches and 3 learning rates")]
    for kw, message in cases:
        with pytest.raises(ValueError, match=message):
            fit_basin(n, d, b, lr, loss, **kw)
    one = d == d[0]
    with pytest.raises(ValueError, match=r"every cell has the same D / N; .* \(leave 'tpp' out\)$"):
        fit_basin(n[one], d[one], b[one], lr[one], loss[one], scale=("tpp",))
    with pytest.raises(ValueError, match=r"^fit_basin: no run with finite, positive"):
        fit_basin(n, d, b, lr, np.full_like(loss, np.nan))


def test_a_cell_that_cannot_fix_its_optimum_is_dropped_with_a_warning():
    (n, d, b, lr, loss), _ = _sweep(ROUND, 0, noise=0.001)
    keep = (d != d[0]) | (b == b[0])   # the first cell keeps one batch only
    with pytest.warns(FitWarning, match=r"dropped cells: N=2e\+08 D=4e\+09"):
        f = fit_basin(n[keep], d[keep], b[keep], lr[keep], loss[keep])
    assert len(f.cells["N"]) == 5


# -- the shipped fit and its benchmark ---------------------------------------------------------------

DATA = resources.data_root() / "steplaw" / "dense_lr_bs_loss.csv"  # Li et al. 2025, shipped with the package
BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_basin.py"


def test_shipped_preset_is_the_fit_of_the_published_runs():
    from batchlaw.simulator.csvio import read_csv

    t = read_csv(DATA)
    b = load_basin("steplaw-basin")
    f = fit_basin(t["N"], t["D"], t["bs"] * 2048, t["lr"], t["smooth loss"], max_excess=0.05, scale=("tpp",),
                  tpp_ref=b.tpp_ref, n_ref=b.n_ref)
    assert len(f.cells["N"]) == 17 and f.n_points == 986
    assert f.residual_sd == pytest.approx(b.noise_sd, rel=0.01)
    for k in SHAPE:
        assert getattr(f.basin, k) == pytest.approx(getattr(b, k), rel=0.03, abs=0.005), k
    for tpp in (19, 50, 466):
        assert f.basin.at(5e8, 5e8 * tpp).b_opt_ratio(-math.log(8)) == pytest.approx(
            b.at(5e8, 5e8 * tpp).b_opt_ratio(-math.log(8)), rel=0.02)


@pytest.mark.skipif(not BENCH.is_file(), reason="benchmarks/ is in the checkout only")
def test_bench_quick_prints_every_section(capsys):
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_basin", BENCH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert bench.main(["--quick"]) == 0
    out = capsys.readouterr().out
    for head in ("2. SHAPE", "3. NOISE", "4. CLAIMS", "5. HELD OUT", "6. TIME"):
        assert head in out
    assert "b_opt_ratio(-ln 8)=" in out and "off-LR B_opt" in out


@pytest.mark.parametrize("kink, scale", [(True, ("tpp", "n")), (False, ())])
def test_analytic_jacobian_matches_finite_differences(kink, scale):
    from batchlaw.simulator import fit_basin as fb

    (n, d, b, lr, loss), _ = _sweep(TRUE, 4, noise=0.002)
    used, cell, keys, _ = fb._select(n, d, b, lr, loss, 0.05)
    data = fb._Data(cell, np.log(b[used]), np.log(lr[used]), loss[used], fb._covariates(keys, scale, 50.0, 5e8), kink)
    theta = fb._start(data, None) + np.random.default_rng(0).normal(0, 0.05, fb._start(data, None).size)
    res, jac = fb._residuals(theta, data, None)
    h = 1e-6
    num = np.stack([(fb._residuals(theta + h * e, data, None)[0] - fb._residuals(theta - h * e, data, None)[0])
                    / (2 * h) for e in np.eye(theta.size)], axis=1)
    np.testing.assert_allclose(jac, num, atol=1e-6)
