"""Tier (a), pure: laws predict what their papers define, presets load by name and round-trip."""

import json

import numpy as np
import pytest

from batchlaw.simulator import laws, presets


def test_every_preset_loads_and_round_trips():
    names = presets.preset_names()
    assert {"chinchilla", "epoch-chinchilla", "epoch-steplaw-batch", "kaplan-loss-batch", "steplaw-batch",
            "steplaw-lr", "deepseek-batch", "zhang-critical-batch"} <= set(names)
    for name in names:
        law = presets.load_preset(name)
        assert law.citation
        assert laws.law_from_dict(json.loads(json.dumps(law.to_dict()))) == law
        assert type(law).from_dict({k: v for k, v in law.to_dict().items() if k != "kind"}) == law


def test_presets_carry_the_published_constants():
    # Hoffmann et al. 2022, eq. 10; Besiroglu et al. 2024, Table 1; Li et al. 2025 (Step Law) eq. for B and lr
    c = laws.load_law("chinchilla")
    assert (c.E, c.A, c.B, c.alpha, c.beta) == (1.69, 406.4, 410.7, 0.34, 0.28)
    e = laws.load_law("epoch-chinchilla")
    assert (round(e.A, 2), round(e.B, 2), e.alpha, e.beta) == (482.01, 2085.43, 0.3478, 0.3658)
    b, lr = laws.load_law("steplaw-batch"), laws.load_law("steplaw-lr")
    assert b.c == pytest.approx(0.58, abs=0.005) and b.exponents[0] == pytest.approx(0.571, abs=5e-4)
    assert lr.c == pytest.approx(1.79, abs=0.01) and lr.exponents == pytest.approx((-0.713, 0.307), abs=1e-3)


def test_unknown_names_and_keys_are_one_line_errors(tmp_path):
    with pytest.raises(ValueError, match=r"unknown; presets are .*chinchilla"):
        laws.load_law("gpt-5")
    with pytest.raises(ValueError, match="not a loss law; loss presets are"):
        laws.load_loss_law("steplaw-batch")
    with pytest.raises(ValueError, match="gamma: unknown key; valid keys are A, B, E, alpha, beta, citation"):
        laws.law_from_dict({"kind": "chinchilla", "E": 1, "A": 1, "B": 1, "alpha": 1, "beta": 1, "gamma": 2})
    with pytest.raises(ValueError, match="kind = 'cubic': allowed are"):
        laws.law_from_dict({"kind": "cubic"})
    p = tmp_path / "law.json"
    p.write_text(json.dumps(laws.load_law("epoch-steplaw-batch").to_dict()))
    assert laws.load_loss_law(str(p)) == laws.load_loss_law("epoch-steplaw-batch")


def test_loss_at_batch_is_the_chinchilla_loss_at_the_optimum_and_convex_around_it():
    law = laws.load_loss_law("epoch-steplaw-batch")
    n, d = np.array([2e8, 1e9, 4e9]), np.array([1e10, 5e10, 2e11])
    b_opt = law.batch_opt.predict(d)
    np.testing.assert_allclose(law.predict(n, d, b_opt), law.loss.predict(n, d), rtol=1e-12)
    factors = 2.0 ** np.arange(-4, 5)
    grid = law.predict(n[:, None], d[:, None], b_opt[:, None] * factors)  # broadcasting (3, 9)
    assert grid.shape == (3, 9) and np.all(np.argmin(grid, axis=1) == 4)
    excess = grid - law.loss.predict(n, d)[:, None]
    np.testing.assert_allclose(excess[:, 5], law.k_above * np.log(2) ** 2)
    np.testing.assert_allclose(excess[:, 3], law.k_below * np.log(2) ** 2)


def test_mccandlish_trade_off_holds_for_s_min_and_e_min():
    # McCandlish et al. 2018, eq. 2.11-2.12: (S/S_min - 1)(E/E_min - 1) = 1 with E = B S
    b = np.array([64.0, 512, 4096])
    s = np.array([1e5, 2e4, 7e3])
    b_crit = 700.0
    lhs = (s / laws.s_min(s, b, b_crit) - 1) * (b * s / laws.e_min(b * s, b, b_crit) - 1)
    np.testing.assert_allclose(lhs, 1.0, rtol=1e-12)


def test_kaplan_loss_at_batch_solves_its_fixed_point_and_only_penalises_large_batches():
    law = laws.load_loss_law("kaplan-loss-batch")
    n, d = 1e9, 2e10
    b = np.array([1e4, 1e5, 1e6, 4e6, 1.6e7])
    loss = law.predict(n, d, b)
    s = d / b
    again = law.loss_at_steps(n, laws.s_min(s, b, law.critical.predict(loss)))
    np.testing.assert_allclose(loss, again, rtol=1e-9)
    assert np.all(np.diff(loss) > 0)


def test_zhang_definition_reproduces_their_notebook():
    # hlzhang109/critical-batch-size plots/chinchilla.ipynb cell 5 (85M): log S = log(a + b / B) with
    # a = 1293.8268694659337, b = 2834258.0888740215 gives CBS = 745.3201466381583 (sequences, ref 256).
    a, b = 1293.8268694659337, 2834258.0888740215
    assert laws.zhang_critical_batch(a, b / a, 256) == pytest.approx(745.3201466381583, rel=1e-9)
    z = laws.load_law("zhang-critical-batch")
    # their law: CBS = 93.196814 (N / 1e6)^0.468278 sequences of 512 tokens (cell 7, N = 1200M -> 2578.19)
    assert z.predict(1.2e9) / 512 == pytest.approx(2578.188, rel=2e-4)
