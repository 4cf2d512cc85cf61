"""Tier (b), CPU + gloo + real megatron-core: ``batchlaw probe-cbs`` on a tiny demo model. A base run
(batch 4, checkpoints every 100 steps) is probed at step 100 with factors 1, 2, 4, 8 under two data
seeds; every branch is a real ``batchlaw train`` run with its own HDF5 log; the JSON/CSV results are
written, and the two seeds' estimates agree within their 80% intervals (the intervals overlap). A
run with the probe ramp then trains at batch 2 and doubles only where the measured B_crit allows."""

import json
import sys

import numpy as np

import pytest

from batchlaw.tools.cli import main

pytestmark = [pytest.mark.dist, pytest.mark.slow]


def _corpus(tmp_path):
    from batchlaw.tools.indexed_data import ByteTokenizer, demo_corpus_files, tokenize_files, write_indexed_dataset

    prefix = tmp_path / "data" / "corpus"
    write_indexed_dataset(prefix, tokenize_files(demo_corpus_files(1_000_000), ByteTokenizer()))
    return prefix


def test_probe_cbs_reproducible_across_seeds(tmp_path, capsys):
    pytest.importorskip("megatron.core")
    prefix = _corpus(tmp_path)
    run = tmp_path / "base"
    from batchlaw.simulator.spec import CONFIG_ROOT

    sets = ["model.name=demo-xs", "train.global_batch=4", "train.steps=0", "train.tokens=51200", "train.lr=0.01",
            "train.warmup_samples=80", "train.min_lr=3e-4", "data.kind=indexed", f"data.path={prefix}",
            f"log.path={run / 'log.h5'}", "log.stdout_every=0", "log.flush_every=50", f"checkpoint.dir={run / 'ckpt'}",
            "checkpoint.every=100", "checkpoint.keep=3"]
    argv = ["train", str(CONFIG_ROOT / "runs" / "tiny-cpu.toml")] + [a for s in sets for a in ("--set", s)]
    assert main(argv) == 0
    est = {}
    for seed in (11, 22):
        out = tmp_path / f"probe{seed}"
        assert main(["probe-cbs", str(run), "--checkpoints", "100", "--factors", "1,2,4,8", "--seeds", str(seed),
                     "--tolerance", "0.01", "--out-dir", str(out)]) == 0
        assert "predicted on cpu-gloo" in capsys.readouterr().out
        data = json.loads((out / "probe.json").read_text())
        assert (out / "probe.csv").read_text().startswith("step,tokens,base_batch,b_crit")
        logs = sorted((out / "branches").rglob("log.h5"))
        assert len(logs) == 4 and all((p.parent / "COMPLETED").is_file() for p in logs)
        e = data["estimates"][0]
        assert e["step"] == 100 and e["tokens"] == 100 * 4 * 64 and e["factors"] == [1, 2, 4, 8]
        assert e["b_simple"] > 0 and e["lo"] <= e["b_crit"] and (e["hi"] is None or e["b_crit"] <= e["hi"])
        est[seed] = e
    # session-5 audit: finished branches are reused, so they must not be reused under other settings; a branch
    # resumes the base checkpoint, so it runs at the base run's world size
    again = ["probe-cbs", str(run), "--checkpoints", "100", "--factors", "1,2,4,8", "--seeds", "11"]
    assert main(again + ["--lr-rule", "linear", "--out-dir", str(tmp_path / "probe11")]) == 2
    assert "was set up with other settings" in capsys.readouterr().err
    assert main(again + ["--nproc-per-node", "2", "--plan-only"]) == 2
    assert "--nproc-per-node = 2: the base run's checkpoints were written by 1 ranks" in capsys.readouterr().err
    a, b = est[11], est[22]
    hi = [x["hi"] if x["hi"] is not None else float("inf") for x in (a, b)]
    print(f"seed 11: {a['b_crit']:.3g} [{a['lo']:.3g}, {hi[0]:.3g}]; seed 22: {b['b_crit']:.3g} [{b['lo']:.3g},"
          f" {hi[1]:.3g}]", file=sys.stderr)
    assert max(a["lo"], b["lo"]) <= min(hi)  # reproducible within the interval
    # batch-size warmup from the probe: batch 2, then the largest doubling under the measured B_crit
    probe = tmp_path / "probe11" / "probe.json"
    warm = tmp_path / "warm"
    ramp = f'{{shape = "probe", probe = "{probe}", start = 2}}'
    sets2 = [x for x in sets if not x.startswith(("log.path", "checkpoint.", "train.global_batch"))]
    sets2 += ["train.global_batch=16", f"train.ramp={ramp}", f"log.path={warm / 'log.h5'}",
              f"checkpoint.dir={warm / 'ckpt'}"]
    assert main(["train", str(CONFIG_ROOT / "runs" / "tiny-cpu.toml")] + [a for s in sets2 for a in ("--set", s)]) == 0
    from batchlaw.tools.logs import read_columns

    c = read_columns(warm / "log.h5", ("tokens", "global_batch_size"))
    b_crit = a["b_crit"]
    assert c["global_batch_size"][0] == 2 and np.all(np.diff(c["global_batch_size"]) >= 0)
    assert np.all(c["global_batch_size"][c["tokens"] > a["tokens"]] <= b_crit)  # never above the measurement
    assert c["global_batch_size"][-1] == 2 ** int(np.log2(b_crit))
    # analyze counts the base run only (branch logs are marked) and shows the probes beside B_simple
    assert main(["analyze", str(tmp_path), "--out-dir", str(tmp_path / "rep")]) == 0
    text = (tmp_path / "rep" / "report.md").read_text()
    assert "2 runs (2 completed) of 1 model size" in text and "| probe11 | 100 |" in text
