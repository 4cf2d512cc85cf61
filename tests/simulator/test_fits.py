"""Tier (a), pure: fits recover known laws from derived fixtures and reproduce published fits.

Golden values: Zhang et al. 2024 (hlzhang109/critical-batch-size, plots/chinchilla.ipynb cells 5-7) and,
from data/ (copied from the public sources, see data/PROVENANCE.md), Besiroglu et al. 2024 (epoch-research/analyzing-chinchilla,
data_analysis.ipynb cell 18).
"""

import warnings
from pathlib import Path

import numpy as np
import pytest
from scipy.optimize import approx_fprime

from batchlaw.simulator import fits, laws
from batchlaw.simulator.csvio import read_csv
from batchlaw.simulator.fit_loss import huber_objective

DATA = Path(__file__).resolve().parents[2] / "data"

# Zhang et al. 2024, chinchilla.ipynb cell 5: steps to the target loss at batch 64..16384 sequences.
ZHANG_STEPS = {85: [46000, 23000, 13282, 7000, 3840, 2528, 1917, 1600, 1600],
               151: [96000, 49000, 24000, 12000, 7128, 4350, 2940, 2400, 2300],
               302: [196000, 90000, 46000, 23400, 13300, 7224, 4980, 3400, 2879],
               604: [311000, 166000, 81000, 37440, 21320, 11400, 7199, 4700, 3800],
               1200: [642000, 331000, 176000, 94000, 46500, 25000, 15360, 8900, 6500]}
ZHANG_CBS = [745.3201466381583, 955.1582414387951, 1393.726947253441, 1888.5221009346358, 2533.4108017868743]


def _chinchilla_points(seed=0, m=150, noise=0.002):
    truth = laws.ChinchillaLoss(E=1.8, A=400.0, B=1500.0, alpha=0.33, beta=0.35)
    rng = np.random.default_rng(seed)
    n = 10 ** rng.uniform(7.5, 10, m)
    d = 10 ** rng.uniform(9, 11.5, m)
    return truth, n, d, truth.predict(n, d) * np.exp(rng.normal(0, noise, m))


def test_huber_gradient_matches_finite_differences():
    _, n, d, loss = _chinchilla_points(m=40, noise=0.01)
    theta = np.array([6.0, 7.5, 0.6, 0.34, 0.36])
    args = (np.log(n), np.log(d), np.log(loss), 0.05)  # a wide delta so both Huber branches occur
    num = approx_fprime(theta, lambda x: huber_objective(x, *args)[0], 1e-7)
    np.testing.assert_allclose(huber_objective(theta, *args)[1], num, rtol=1e-4, atol=1e-6)


def test_fit_loss_recovers_a_known_law_with_intervals():
    truth, n, d, loss = _chinchilla_points()
    r = fits.fit_loss(n, d, loss, bootstrap=30)
    assert r.success and r.n_points == 150 and r.ci_level == 0.8
    assert r.params["E"] == pytest.approx(truth.E, rel=0.03)
    assert r.params["alpha"] == pytest.approx(truth.alpha, abs=0.03)
    assert r.params["beta"] == pytest.approx(truth.beta, abs=0.03)
    for k in ("E", "alpha", "beta"):
        assert r.ci[k][0] <= r.params[k] <= r.ci[k][1]
    held = fits.fit_loss_heldout(n, d, loss, quantile=0.8).extra["heldout"]
    assert held["n_heldout"] == 30 and held["mean_abs_rel_error"] < 0.01


def test_fit_loss_rejects_too_few_points():
    with pytest.raises(ValueError, match="usable points"):
        fits.fit_loss([1e8, 2e8, -1, 4e8, 5e8, 6e8], [1e9] * 6, [3.0] * 6)


def test_fit_loss_reproduces_epochs_huber_fit_on_the_chinchilla_points():
    t = read_csv(DATA / "epoch_chinchilla" / "svg_extracted_data.csv")
    keep = np.argsort(t["loss"])[:-5]
    n = t["Model Size"][keep]
    r = fits.fit_loss(n, t["Training FLOP"][keep] / (6 * n), t["loss"][keep])
    # Besiroglu et al. 2024 notebook cell 18: A=477.84, B=2143.86, E=1.81724, alpha=0.34731, beta=0.36718
    assert r.extra["objective"] == pytest.approx(0.0010182740, abs=1e-10)
    for k, v in {"A": 477.84, "B": 2143.86, "E": 1.81724, "alpha": 0.34731, "beta": 0.36718}.items():
        assert r.params[k] == pytest.approx(v, rel=2e-3)


def test_power_law_exact_and_bootstrap_estimates():
    x = np.array([1e8, 2e8, 4e8, 8e8, 1.6e9])
    r = fits.fit_power_law([x], 3.0 * x**0.5, names=["N"], bootstrap=50)
    assert r.params["c"] == pytest.approx(3.0, rel=1e-9) and r.params["N"] == pytest.approx(0.5, abs=1e-12)
    rng = np.random.default_rng(3)
    n, d = 10 ** rng.uniform(8, 9, 80), 10 ** rng.uniform(9, 11, 80)
    y = 2.0 * n**-0.7 * d**0.3 * np.exp(rng.normal(0, 0.05, 80))
    m = fits.fit_power_law([n, d], y, names=["N", "D"], bootstrap=200, estimate="bootstrap-mean")
    assert m.params["N"] == pytest.approx(-0.7, abs=0.05) and m.params["D"] == pytest.approx(0.3, abs=0.03)
    assert m.ci["N"][0] < -0.7 < m.ci["N"][1]
    with pytest.raises(ValueError, match="estimate = 'median'"):
        fits.fit_power_law([x], x, estimate="median")


def _sweep(seed=1, noise=1e-5):
    """A batch x lr sweep over 5 (N, D) cells with a known basin: B_opt = 0.5 D^0.6, lr_opt = 5 N^-0.5."""
    rng = np.random.default_rng(seed)
    rows = []
    for n, d in [(1e8, 1e9), (1e8, 4e9), (3e8, 1.6e10), (3e8, 6.4e10), (1e9, 2.5e11)]:
        b_opt, lr_opt = 0.5 * d**0.6, 5.0 * n**-0.5
        for b in b_opt * 2.0 ** np.arange(-3, 4):
            for lr in lr_opt * 2.0 ** np.arange(-2, 3):
                loss = 2.0 + 0.02 * np.log(b / b_opt) ** 2 + 0.03 * np.log(lr / lr_opt) ** 2
                rows.append((n, d, b, lr, loss + rng.normal(0, noise)))
    return map(np.array, zip(*rows))


@pytest.mark.parametrize("method", ["near-optimal", "parabola"])
def test_optimal_batch_and_lr_recover_a_known_basin(method):
    n, d, b, lr, loss = _sweep()
    out = fits.fit_optimal_batch(n, d, b, loss, lr=lr, method=method, bootstrap=50)
    assert out["batch"].params["D"] == pytest.approx(0.6, abs=0.01)
    assert out["batch"].params["c"] == pytest.approx(0.5, rel=0.2)
    assert out["lr"].params["N"] == pytest.approx(-0.5, abs=0.02)
    assert out["lr"].params["D"] == pytest.approx(0.0, abs=0.02)
    assert out["batch"].extra["n_cells"] == 5


def test_optimal_batch_warns_with_too_few_cells_and_rejects_bad_options():
    n, d, b, _, loss = _sweep()
    two = d <= 4e9
    with pytest.warns(fits.FitWarning) as record:
        fits.fit_optimal_batch(n[two], d[two], b[two], loss[two], bootstrap=0)
    assert any("2 (N, D) cells" in str(w.message) for w in record)
    with pytest.raises(ValueError, match="allowed are N, D, C"):
        fits.fit_optimal_batch(n, d, b, loss, batch_vars=("T",), bootstrap=0)
    with pytest.raises(ValueError, match="method = 'grid'"):
        fits.fit_optimal_batch(n, d, b, loss, method="grid")


def test_critical_batch_exact_and_warns_outside_the_measured_range():
    b = np.array([64, 128, 256, 512, 1024, 2048.0])
    c = fits.fit_critical_batch(b, 1000 * (1 + 300 / b), bootstrap=20)  # McCandlish et al. 2018, eq. 2.11
    assert c.params["B_noise"] == pytest.approx(300, rel=1e-6) and c.params["S_min"] == pytest.approx(1000, rel=1e-6)
    assert c.success and c.cov.shape == (2, 2)
    with pytest.warns(fits.FitWarning, match="far outside|search bound"):
        fits.fit_critical_batch(b, 1000 * (1 + 1e6 / b))


def test_critical_batch_law_reproduces_zhang_et_al():
    sizes = np.repeat(list(ZHANG_STEPS), 9).astype(float)
    batch = np.tile(2.0 ** np.arange(6, 15), 5)
    steps = np.concatenate(list(ZHANG_STEPS.values())).astype(float)
    out = fits.fit_critical_batch_law(sizes, batch, steps, definition="zhang", b_ref=256)
    got = [out["per_size"][float(s)].params["B_crit"] for s in ZHANG_STEPS]
    np.testing.assert_allclose(got, ZHANG_CBS, rtol=1e-6)
    # cell 7: cbs = 93.196814043949 * model_size^0.4682782328130422 (N in millions)
    assert out["law"].params["c"] == pytest.approx(93.196814043949, rel=1e-5)
    assert out["law"].params["N"] == pytest.approx(0.4682782328130422, abs=1e-6)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        mc = fits.fit_critical_batch_law(sizes, batch, steps)  # B_crit = B_noise, no warning on this data
    assert mc["law"].params["N"] > out["law"].params["N"]
    with pytest.raises(ValueError, match="needs a positive reference batch"):
        fits.fit_critical_batch_law(sizes, batch, steps, definition="zhang")


def test_a_variable_with_one_value_has_no_exponent():
    """Session-5 audit: `fit batch` on rows of one token budget printed a D exponent with a tight interval."""
    n = np.array([1e8, 2e8, 4e8, 8e8])
    with pytest.raises(ValueError, match=r"^power-law fit: D takes one value \(1e\+10, spread 0.00%\)"):
        fits.fit_power_law([n, np.full(4, 1e10)], 0.3 * n**0.5, names=["N", "D"], bootstrap=0)
    with pytest.raises(ValueError, match="D takes one value"):  # one budget reached with a batch of overshoot
        fits.fit_power_law([n, 1e10 + np.array([0, 131072, 262144, 0])], 0.3 * n**0.5, names=["N", "D"], bootstrap=0)
    with pytest.raises(ValueError, match="move together"):
        fits.fit_power_law([n, 20 * n], 0.3 * n**0.5, names=["N", "D"], bootstrap=0)


def test_a_size_whose_critical_fit_failed_stays_out_of_the_law():
    """Session-5 audit: a size with B_noise at its search bound (success = False) entered the law."""
    b = np.array([64, 128, 256, 512, 1024, 2048.0])
    sizes, steps = [], []
    for n, bn in ((1e8, 100), (2e8, 140), (4e8, 200), (8e8, 1e7)):  # the largest: no knee in the measured range
        sizes += [n] * len(b)
        steps += list(1000 * (1 + bn / b))
    with pytest.warns(fits.FitWarning, match="left out"):
        out = fits.fit_critical_batch_law(np.array(sizes), np.tile(b, 4), np.array(steps))
    assert not out["per_size"][8e8].success
    assert out["law"].n_points == 3 and out["law"].params["N"] == pytest.approx(np.log(2) / np.log(4), abs=0.05)
