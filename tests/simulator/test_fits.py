"""Tier (a), pure: laws and fits recover known parameters; presets carry their published values."""

import json

import numpy as np
import pytest

from batchlaw.simulator import fits, laws
from batchlaw.tools.cli import main


def test_fit_loss_recovers_a_known_chinchilla_law():
    truth = laws.ChinchillaLoss(E=1.8, A=400.0, B=1500.0, alpha=0.33, beta=0.35)
    rng = np.random.default_rng(0)
    n = 10 ** rng.uniform(7.5, 10, 200)
    d = 10 ** rng.uniform(9, 11.5, 200)
    loss = truth.predict(n, d) * np.exp(rng.normal(0, 0.002, 200))
    r = fits.fit_loss(n, d, loss, bootstrap=20)
    assert r.success and r.n_points == 200
    assert r.params["E"] == pytest.approx(1.8, rel=0.03)
    assert r.params["alpha"] == pytest.approx(0.33, abs=0.03)
    assert r.params["beta"] == pytest.approx(0.35, abs=0.03)
    assert r.ci["alpha"][0] <= r.params["alpha"] <= r.ci["alpha"][1]


def test_power_law_and_critical_batch_known_answers():
    x = np.array([1e8, 2e8, 4e8, 8e8, 1.6e9])
    r = fits.fit_power_law([x], 3.0 * x**0.5, names=["N"], bootstrap=50)
    assert r.params["c"] == pytest.approx(3.0, rel=1e-9) and r.params["N"] == pytest.approx(0.5, abs=1e-12)
    b = np.array([64, 128, 256, 512, 1024, 2048.0])
    steps = 1000 * (1 + 300 / b)  # S_min = 1000, B_crit = 300 (McCandlish et al. 2018, eq. 2.11)
    c = fits.fit_critical_batch(b, steps)
    assert c.params["B_crit"] == pytest.approx(300, rel=1e-4) and c.params["S_min"] == pytest.approx(1000, rel=1e-4)
    with pytest.warns(fits.FitWarning, match="far outside"):
        fits.fit_critical_batch(b, 1000 * (1 + 1e6 / b))


def test_optimal_batch_recipe_on_a_known_basin():
    rng = np.random.default_rng(1)
    rows = []
    for d in (1e9, 4e9, 1.6e10, 6.4e10):
        b_opt = 0.5 * d**0.6
        for b in b_opt * 2.0 ** np.arange(-3, 4):
            rows.append((1e8, d, b, 2.0 + 0.02 * np.log(b / b_opt) ** 2 + rng.normal(0, 1e-5)))
    n, d, b, loss = map(np.array, zip(*rows))
    r = fits.fit_optimal_batch(n, d, b, loss, bootstrap=0)["batch"]
    assert r.params["D"] == pytest.approx(0.6, abs=0.01)


def test_presets_and_round_trip():
    law = laws.load_loss_law("epoch-steplaw-batch")
    back = laws.law_from_dict(json.loads(json.dumps(law.to_dict())))
    assert back == law
    n, d = 1e9, 5e10
    b_opt = law.batch_opt.predict(d)
    assert law.predict(n, d, b_opt) == pytest.approx(laws.PRESETS["epoch-steplaw-batch"].loss.predict(n, d))
    assert law.predict(n, d, 4 * b_opt) > law.predict(n, d, b_opt)
    # Hoffmann et al. 2022 eq. 10: L(70B, 1.4T) = 1.69 + 406.4/N^0.34 + 410.7/D^0.28 ~ 1.94
    assert laws.load_law("chinchilla").predict(70e9, 1.4e12) == pytest.approx(1.937, abs=0.005)
    with pytest.raises(ValueError, match="unknown; presets are"):
        laws.load_law("gpt-5")


def test_fit_cli_json_and_column_errors(tmp_path, capsys):
    rng = np.random.default_rng(2)
    n = 10 ** rng.uniform(8, 10, 60)
    d = 10 ** rng.uniform(9, 11, 60)
    loss = laws.PRESETS["chinchilla"].predict(n, d)
    f = tmp_path / "p.csv"
    f.write_text("params,tok,L\n" + "\n".join(f"{a},{b},{c}" for a, b, c in zip(n, d, loss)))
    assert main(["fit", "loss", "--data", str(f), "--n-col", "params", "--d-col", "tok", "--loss-col", "L", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["loss"]["params"]["E"] == pytest.approx(1.69, abs=0.02)
    assert main(["fit", "loss", "--data", str(f), "--n-col", "N", "--d-col", "tok", "--loss-col", "L"]) == 2
    assert "--n-col 'N': no such column; the file has params, tok, L" in capsys.readouterr().err
