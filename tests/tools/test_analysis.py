"""Tier (a), pure (h5py, numpy, matplotlib; no torch): log summaries, optimal batch, laws, plots,
report, inspect and calibrate, on logs written by the project's own writer from a known law."""


import numpy as np
import pytest

from batchlaw.plugin.h5log import RunLogWriter
from batchlaw.tools.analysis import analyse, optimal_batch
from batchlaw.tools.cli import main
from batchlaw.tools.logs import load_runs

SEQ = 64


def _true_loss(n, b):
    # a known basin: L = 2 + 1e3/N^0.5 + 0.05 ln(B / B_opt(N))^2 with B_opt = 0.5 N^0.4 sequences
    return 2.0 + 1e3 / n**0.5 + 0.05 * np.log(b / (0.5 * n**0.4)) ** 2


def _write(path, n, b, steps=200, trace=400.0, g2=4.0):
    cfg = {"model": {"name": f"m{n}", "layers": 2, "hidden": 32, "heads": 2, "vocab": 384, "seq_len": SEQ},
           "parallel": {"tp": 1, "pp": 1, "micro_batch": 2}, "train": {"tokens": 100000, "global_batch": b}}
    w = RunLogWriter(path, attrs={"config": cfg, "num_params": n, "model_name": f"m{n}", "seq_len": SEQ,
                                  "layout": {"world_size": 1, "tp": 1, "pp": 1, "vpp": 1, "dp": 1, "micro_batch": 2}},
                     flush_every=64)
    rng = np.random.default_rng(int(n) + b)
    final = _true_loss(n, b)
    for s in range(1, steps + 1):
        w.append({"step": s, "tokens": s * b * SEQ, "global_batch_size": b, "consumed_samples": s * b,
                  "loss": final + 3.0 / s, "gns_g2": g2 + rng.normal(0, 1), "gns_trace": trace + rng.normal(0, 20),
                  "step_time_s": 1e-3 * b * (1 + n / 1e6), "tokens_per_s": 1.0})
    w.close()


@pytest.fixture(scope="module")
def logdir(tmp_path_factory):
    d = tmp_path_factory.mktemp("logs")
    for n in (1e5, 4e5, 1.6e6):
        for b in (4, 8, 16, 32, 64, 128, 256, 512, 1024):
            _write(d / f"n{int(n)}_b{b}.h5", n, b)
    return d


def test_optimal_batch_from_a_known_basin(logdir):
    runs = load_runs(logdir)
    assert len(runs) == 27 and all(r.status == "completed" for r in runs)
    res = analyse(runs, extrapolate_n=1e9)
    assert len(res.optima) == 3
    for o in res.optima:
        assert o.b_opt == pytest.approx(0.5 * o.num_params**0.4, rel=0.15)
        assert o.b_crit == pytest.approx(100.0, rel=0.1)  # tr(Sigma)/|G|^2 = 400/4
    assert res.b_opt_vs_n.exponent == pytest.approx(0.4, abs=0.05)
    assert res.extrapolation["b_opt"] == pytest.approx(0.5 * 1e9**0.4, rel=0.3)


def test_optimal_batch_edges_and_three_points():
    assert optimal_batch([4, 8, 16, 32], [1.0, 1.1, 1.2, 1.3])[0] == 4  # basin below the sweep
    b, lo, hi, _ = optimal_batch([4, 8, 16], [1.2, 1.0, 1.2])
    assert b == pytest.approx(8) and (lo, hi) == (4, 16)  # three points: the bracket is the interval


def test_analyze_cli_writes_report_and_pictures(logdir, tmp_path):
    out = tmp_path / "rep"
    assert main(["analyze", str(logdir), "--out", str(out), "--extrapolate", "1e9"]) == 0
    text = (out / "report.md").read_text()
    assert "B_opt(N) = " in text and "extrapolated to N = 1e+09" in text
    assert "27 runs (27 completed) of 3 model sizes; 3 of 3 sizes have a bracketed optimum" in text
    for word in ("B_simple", "B_crit", "B_opt", "nats per token", "parametric"):
        assert word in text.split("## Runs")[0]  # defined before the first table
    for png in ("loss_curves.png", "noise_scale.png", "final_loss_vs_batch.png", "bopt_vs_n.png"):
        data = (out / png).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    assert (out / "runs.csv").read_text().startswith("path,model_name")


def test_inspect_and_bad_logdir(logdir, capsys):
    f = sorted(logdir.glob("*.h5"))[0]
    assert main(["inspect", str(f)]) == 0
    out = capsys.readouterr().out
    assert "rows: 200, steps 1..200" in out and "gns_trace" in out
    assert main(["analyze", str(logdir / "nope")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_calibrate_from_logs_improves_prediction(logdir, tmp_path, capsys):
    out = tmp_path / "prof.toml"
    assert main(["calibrate", str(logdir), "--system", "cpu-gloo", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    before, after = (float(x.rstrip("%,")) for x in text.split("median |error| of step time ")[1].split()[0:3:2])
    assert after < before
    from batchlaw.simulator.system import load_system

    assert load_system(out).name == "cpu-gloo"


def test_a_refused_analysis_writes_no_report_folder(tmp_path, capsys):
    """Session-5 audit: a bad --grid or an empty LOGDIR failed after the report folder, runs.csv and
    pictures were written; every input is now checked first."""
    from batchlaw.tools.cli import main

    grid = tmp_path / "nolaw.csv"
    grid.write_text("model,global_batch\ngpt-180m,64\n")
    rep = tmp_path / "rep"
    for args in (["analyze", str(tmp_path / "nodir"), "--out-dir", str(rep)],
                 ["analyze", str(tmp_path), "--out-dir", str(rep), "--grid", str(grid)],
                 ["analyze", str(tmp_path), "--out-dir", str(rep), "--grid", str(tmp_path / "missing.csv")]):
        assert main(args) == 2, args
        err = capsys.readouterr().err.strip()
        assert err.startswith("batchlaw: error:") and "\n" not in err, err
        assert not rep.exists(), args
