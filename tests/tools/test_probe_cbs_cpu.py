"""Tier (b), CPU + gloo + real megatron-core: ``batchlaw probe-cbs`` on a tiny demo model. A base run
(batch 4, checkpoints every 100 steps) is probed at step 100 with factors 1, 2, 4, 8 under two data
seeds in one probe; every branch is a real ``batchlaw train`` run with its own HDF5 log; the JSON/CSV
results carry the noise plan, the per-seed excess curves, the monotone fit and either a B_crit with
its 80% interval or "not determined" with the reason. A run with the probe ramp then trains at batch 2
and doubles only where the measured B_crit allows (or the ramp refuses a probe without a number)."""

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


def test_probe_cbs_on_real_branches(tmp_path, capsys):
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
    out = tmp_path / "probe11"
    assert main(["probe-cbs", str(run), "--checkpoints", "100", "--factors", "1,2,4,8", "--seeds", "11,22",
                 "--window-tokens", "32768", "--tolerance", "0.01", "--out-dir", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "predicted on cpu-gloo" in printed and "noise plan: 2 seed(s) x 32,768-token window" in printed
    data = json.loads((out / "probe.json").read_text())
    assert (out / "probe.csv").read_text().startswith("step,tokens,base_batch,b_crit")
    logs = sorted((out / "branches").rglob("log.h5"))
    assert len(logs) == 8 and all((p.parent / "COMPLETED").is_file() for p in logs)
    est = data["estimates"][0]
    assert est["step"] == 100 and est["tokens"] == 100 * 4 * 64 and est["factors"] == [1, 2, 4, 8]
    assert est["num_seeds"] == 2 and est["interval_from"] == "seeds" and sorted(est["per_seed_excess"]) == ["11", "22"]
    assert est["noise_plan"]["num_seeds"] == 2 and est["window_tokens"] == 32_768 and est["b_simple"] > 0
    if est["determined"]:
        assert est["reason"] == "" and est["lo"] <= est["b_crit"]
        assert est["hi"] is None or est["b_crit"] <= est["hi"]
    else:
        assert est["reason"] and (est["b_crit"] is None or est["bound"] == ">=")
    hi = est["hi"] if est["hi"] is not None else float("inf")
    print(f"seeds 11, 22: B_crit {est['b_crit']} [{est['lo']}, {hi}] {est['reason']}; excess {est['excess']}",
          file=sys.stderr)
    # session-5 audit: finished branches are reused, so they must not be reused under other settings; a branch
    # resumes the base checkpoint, so it runs at the base run's world size
    again = ["probe-cbs", str(run), "--checkpoints", "100", "--factors", "1,2,4,8", "--seeds", "11,22",
             "--window-tokens", "32768"]
    assert main(again + ["--lr-rule", "linear", "--out-dir", str(out)]) == 2
    assert "was set up with other settings" in capsys.readouterr().err
    assert main(again + ["--nproc-per-node", "2", "--plan-only"]) == 2
    assert "--nproc-per-node = 2: the base run's checkpoints were written by 1 ranks" in capsys.readouterr().err
    # batch-size warmup from the probe: batch 2, then the largest doubling under the measured B_crit
    probe = out / "probe.json"
    warm = tmp_path / "warm"
    ramp = f'{{shape = "probe", probe = "{probe}", start = 2}}'
    sets2 = [x for x in sets if not x.startswith(("log.path", "checkpoint.", "train.global_batch"))]
    sets2 += ["train.global_batch=16", f"train.ramp={ramp}", f"log.path={warm / 'log.h5'}",
              f"checkpoint.dir={warm / 'ckpt'}"]
    warm_argv = ["train", str(CONFIG_ROOT / "runs" / "tiny-cpu.toml")] + [a for s in sets2 for a in ("--set", s)]
    if est["b_crit"] is None:  # no number measured: the ramp refuses the probe in one line
        assert main(warm_argv) == 2 and "train.ramp.probe" in capsys.readouterr().err
    else:
        assert main(warm_argv) == 0
        from batchlaw.tools.logs import read_columns

        c = read_columns(warm / "log.h5", ("tokens", "global_batch_size"))
        b_crit = est["b_crit"]
        assert c["global_batch_size"][0] == 2 and np.all(np.diff(c["global_batch_size"]) >= 0)
        assert np.all(c["global_batch_size"][c["tokens"] > est["tokens"]] <= b_crit)  # never above the measurement
        assert c["global_batch_size"][-1] == min(16, 2 ** int(np.log2(b_crit)))
    # analyze counts the base run only (branch logs are marked) and shows the probes beside B_simple
    assert main(["analyze", str(tmp_path), "--out-dir", str(tmp_path / "rep")]) == 0
    text = (tmp_path / "rep" / "report.md").read_text()
    runs = 1 if est["b_crit"] is None else 2  # the base run, and the warm run when it trained
    assert f"{runs} run{'s' * (runs > 1)} ({runs} completed) of 1 model size" in text and "| probe11 | 100 |" in text
