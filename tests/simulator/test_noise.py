"""Tier (a), pure: the two-batch noise-scale estimator and its offline smoothing."""

import numpy as np

from batchlaw.simulator.noise import EmaNoiseScale, b_simple_series, two_batch_estimates


def _linear_sum_grads(xs):
    """Per-sample gradient of sum(W x + b) for a Linear(2, 2): every row of W is x, bias grads 1."""
    return [np.concatenate([np.tile(np.asarray(x, float), 2), np.ones(2)]) for x in xs]


def test_fairscale_two_rank_golden_cases():
    # fairscale AdaScale golden cases (tests/optim/test_ada_scale.py: Linear(2,2) with bias, loss =
    # out.sum(), 2 ranks x 1 sample), as recomputed in shared/reference/plugin_gns_sim.py:
    # inputs [1,0],[0,1] -> |G|^2 = 2, tr(Sigma) = 2; inputs [-1,1],[1,-1] -> |G|^2 = -2, tr(Sigma) = 8.
    for xs, (g2_ref, s_ref) in (([[1, 0], [0, 1]], (2.0, 2.0)), ([[-1, 1], [1, -1]], (-2.0, 8.0))):
        gs = _linear_sum_grads(xs)
        small = np.mean([g @ g for g in gs])
        big = np.mean(gs, axis=0) @ np.mean(gs, axis=0)
        assert two_batch_estimates(small, big, 1, 2) == (g2_ref, s_ref)


def test_unbiased_on_quadratic_while_micro_batch_count_changes():
    # l_i(w) = 0.5 |w - x_i|^2 with x_i ~ N(0, s^2 I_d): G = w, tr(Sigma) = d s^2 exactly.
    rng = np.random.default_rng(0)
    d, sigma, trials = 64, 1.0, 3000
    w = np.full(d, 0.25)  # |G|^2 = 4
    g2s, traces = [], []
    for t in range(trials):
        m = [1, 2, 4][t % 3]  # micro-batches per rank change as under a ramp
        b_small, ranks = 2 * m, 4
        x = rng.normal(0.0, sigma, size=(ranks, b_small, d))
        local = w - x.mean(axis=1)  # per-rank gradient
        small = np.mean(np.sum(local**2, axis=1))
        big = np.sum((w - x.reshape(-1, d).mean(axis=0)) ** 2)
        g2, tr = two_batch_estimates(small, big, b_small, ranks * b_small)
        g2s.append(g2)
        traces.append(tr)
    g2s, traces = np.array(g2s), np.array(traces)
    se_g2, se_tr = g2s.std() / np.sqrt(trials), traces.std() / np.sqrt(trials)
    assert abs(g2s.mean() - 4.0) < 4 * se_g2
    assert abs(traces.mean() - d * sigma**2) < 4 * se_tr


def test_smoothing_uses_ratio_of_emas_not_ema_of_ratio():
    rng = np.random.default_rng(1)
    g2 = 1.0 + rng.normal(0, 0.8, 5000)  # noisy, sometimes negative, mean 1
    trace = np.full(5000, 512.0)
    series = b_simple_series(g2, trace, beta=0.99)
    assert abs(series[-1] / 512.0 - 1) < 0.25  # ratio of means ~ 512
    e = EmaNoiseScale(beta=0.99)
    for a, b in zip(g2, trace):
        last = e.update(a, b)
    assert np.isclose(last, series[-1])
    assert np.isnan(two_batch_estimates(1.0, 1.0, 4, 4)[0])  # no second batch size
