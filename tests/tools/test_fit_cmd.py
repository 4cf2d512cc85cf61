"""Tier (a), pure: ``batchlaw fit`` on CSV files the tests write themselves.

Critical-batch rows: Zhang et al. 2024, hlzhang109/critical-batch-size plots/chinchilla.ipynb cell 5.
"""

import json

import numpy as np
import pytest

from batchlaw.simulator import laws
from batchlaw.tools.cli import main


def _write(path, header, rows):
    path.write_text(",".join(header) + "\n" + "\n".join(",".join(f"{v:.17g}" for v in r) for r in rows) + "\n")
    return str(path)


@pytest.fixture
def loss_csv(tmp_path):
    rng = np.random.default_rng(2)
    n = 10 ** rng.uniform(8, 10, 60)
    d = 10 ** rng.uniform(9, 11, 60)
    loss = laws.load_law("chinchilla").predict(n, d)
    return _write(tmp_path / "points.csv", ["params", "flops", "L"], zip(n, 6 * n * d, loss))


def test_fit_loss_json_from_a_compute_column(loss_csv, capsys):
    assert main(["fit", "loss", "--data", loss_csv, "--n-col", "params", "--c-col", "flops", "--loss-col", "L",
                 "--bootstrap", "5", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    p = out["loss"]["params"]  # Hoffmann et al. 2022, eq. 10 generated the points exactly
    assert p["E"] == pytest.approx(1.69, abs=0.02) and p["alpha"] == pytest.approx(0.34, abs=0.01)
    assert set(out["loss"]["ci"]) == {"A", "B", "E", "alpha", "beta"} and out["loss"]["n_points"] == 60


def test_fit_loss_text_output_drop_highest_and_heldout(loss_csv, capsys):
    assert main(["fit", "loss", "--data", loss_csv, "--n-col", "params", "--c-col", "flops", "--loss-col", "L",
                 "--drop-highest", "5", "--heldout", "0.8"]) == 0
    text = capsys.readouterr().out
    assert "loss: n_points=55" in text and "held out 11 runs" in text


def test_missing_column_is_a_one_line_error_listing_the_columns(loss_csv, capsys):
    assert main(["fit", "loss", "--data", loss_csv, "--n-col", "N", "--c-col", "flops", "--loss-col", "L"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith("--n-col 'N': no such column; the file has params, flops, L") and "\n" not in err
    assert main(["fit", "loss", "--data", loss_csv, "--n-col", "params", "--c-col", "flops", "--loss-col", "L",
                 "--bootstrap", "-1"]) == 2


def test_fit_critical_batch_reproduces_zhang_from_a_csv(tmp_path, capsys):
    steps = {85: [46000, 23000, 13282, 7000, 3840, 2528, 1917, 1600, 1600],
             151: [96000, 49000, 24000, 12000, 7128, 4350, 2940, 2400, 2300],
             302: [196000, 90000, 46000, 23400, 13300, 7224, 4980, 3400, 2879]}
    rows = [(size * 1e6, 2.0**k, s) for size, ss in steps.items() for k, s in zip(range(6, 15), ss)]
    f = _write(tmp_path / "cbs.csv", ["n", "bs_seqs", "steps"], rows)
    assert main(["fit", "critical-batch", "--data", f, "--n-col", "n", "--batch-col", "bs_seqs", "--steps-col",
                 "steps", "--definition", "zhang", "--b-ref", "256", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    # their cell 5 output: 745.32, 955.16, 1393.73 sequences
    assert out["N=8.5e+07"]["params"]["B_crit"] == pytest.approx(745.3201, rel=1e-6)
    assert out["N=3.02e+08"]["params"]["B_crit"] == pytest.approx(1393.7269, rel=1e-6)
    assert "B_crit(N)" in out
    assert main(["fit", "critical-batch", "--data", f, "--n-col", "n", "--batch-col", "bs_seqs", "--steps-col",
                 "steps", "--definition", "zhang"]) == 2


def test_fit_batch_json_in_sequences(tmp_path, capsys):
    rows = []
    for n, d in [(1e8, 1e9), (1e8, 4e9), (3e8, 1.6e10), (1e9, 6.4e10)]:
        b_opt = 0.5 * d**0.6 / 2048
        for b in b_opt * 2.0 ** np.arange(-3, 4):
            rows.append((n, d, b, 1e-3, 2.0 + 0.02 * np.log(b / b_opt) ** 2))
    f = _write(tmp_path / "sweep.csv", ["N", "D", "bs", "lr", "loss"], rows)
    assert main(["fit", "batch", "--data", f, "--n-col", "N", "--d-col", "D", "--batch-col", "bs",
                 "--batch-unit", "2048", "--loss-col", "loss", "--method", "parabola", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["batch_opt"]["params"]["D"] == pytest.approx(0.6, abs=1e-3)
    assert out["batch_opt"]["params"]["c"] == pytest.approx(0.5, rel=0.02)


def test_left_out_rows_and_missing_intervals_are_said(tmp_path, capsys):
    """Session-5 audit: NaN, negative and infinite values were dropped silently (only n_points moved), and a
    fit without --bootstrap printed bare numbers."""
    b = np.array([64, 128, 256, 512, 1024, 2048.0])
    rows = [(n, bb, 1000 * (1 + bn / bb)) for n, bn in ((1e8, 100), (2e8, 140), (4e8, 200)) for bb in b]
    rows += [(4e8, -64.0, 5000.0), (4e8, 64.0, float("nan"))]
    path = _write(tmp_path / "cbs.csv", ["n", "b", "s"], rows)
    assert main(["fit", "critical-batch", "--data", path, "--n-col", "n", "--batch-col", "b", "--steps-col", "s"]) == 0
    out, err = capsys.readouterr()
    assert "note: 2 of 20 rows left out (a missing, non-finite or non-positive value; first: row 18, b = -64)" in err
    assert "(no intervals: --bootstrap 0" in out
    assert "Traceback" not in err and all(line.startswith(("note:", "warning:")) for line in err.splitlines())


def test_data_is_found_by_its_documented_name_outside_the_checkout(tmp_path, monkeypatch, capsys):
    """docs/laws.md writes --data data/zhang2024_cbs/...: outside the checkout (a wheel) that path was missing. The
    shipped copy is read and named on stderr; an unknown name lists the shipped sets."""
    monkeypatch.chdir(tmp_path)
    assert main(["fit", "critical-batch", "--data", "data/zhang2024_cbs/steps_to_target_loss.csv", "--n-col",
                 "n_params_nominal", "--batch-col", "batch_size_seqs", "--steps-col", "steps_to_target"]) == 0
    captured = capsys.readouterr()
    assert "B_crit(N): n_points=5 success=True" in captured.out
    assert "read from the copy shipped with batchlaw" in captured.err
    assert main(["fit", "loss", "--data", "data/nope.csv", "--n-col", "a", "--d-col", "b", "--loss-col", "c"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "shipped are data/cerebras_gpt/" in err and "data/steplaw/dense_lr_bs_loss.csv" in err
