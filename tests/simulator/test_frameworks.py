"""Tier (a), pure: framework presets (simulator/frameworks.py, configs/frameworks) and blank settings priced
over their choices (simulator/choices.py)."""

import json

import numpy as np
import pytest

from batchlaw.simulator import frameworks
from batchlaw.simulator.choices import SPAN
from batchlaw.simulator.frameworks import framework_names, kernels_framework, load_framework, resolve_name
from batchlaw.simulator.perf_data import public_rows
from batchlaw.simulator.system import load_system
from batchlaw.simulator.table import normalise, predict_table

# Llama 3 70B (80 layers, GQA 8) on 64 H100, tp 4 pp 4, as the NeMo / dgxc recipes lay it out
L70 = dict(layers=80, hidden=8192, heads=64, query_groups=8, seq_len=8192, vocab=128256, ffn_hidden=28672,
           activation="swiglu", tp=4, pp=4, dp=4, micro_batch=1, global_batch=128, recompute="none",
           precision="bf16", gpu="h100-sxm")


def _rows(**kw):
    return {k: np.array([v] if not isinstance(v, list) else v) for k, v in {**L70, **kw}.items()}


def test_every_shipped_preset_loads_and_names_its_settings():
    names = framework_names()
    for required in ("batchlaw", "batchlaw-te", "batchlaw-local", "megatron-lm-2021", "megatron-core", "nemo-1",
                     "nemo-2", "megatron-bridge"):
        assert required in names
    for name in names:
        line = frameworks.describe(name, load_framework(name))
        assert "flash_attention=" in line and "grad_reduce_in_fp32=" in line


def test_unknown_framework_is_one_line_naming_the_presets():
    with pytest.raises(ValueError, match=r"framework = 'nemo-3': unknown; framework presets are .*megatron-core"):
        predict_table(_rows(framework="nemo-3"))


def test_blank_settings_take_the_preset_and_explicit_columns_win():
    out = predict_table(_rows(framework=["nemo-2", "megatron-lm-2021", "nemo-2"],
                              flash_attention=["", "", "no"], **{k: [v] * 3 for k, v in L70.items()
                                                                if k not in ("framework", "flash_attention")}))
    assert out["flash_attention"].tolist() == [True, False, False]  # preset, preset, the column
    assert out["cross_entropy_fusion"].tolist() == ["native", "none", "native"]  # NeMo 2.0 GPTConfig: fused loss
    assert out["grad_reduce_in_fp32"].tolist() == [False, True, False]
    assert out["framework"].tolist() == ["nemo-2", "megatron-lm-2021", "nemo-2"]
    assert out["pred_iter_time_s"][2] > out["pred_iter_time_s"][0]  # unfused attention costs more


def test_batchlaw_resolves_by_what_the_trainer_would_run(monkeypatch):
    # plugin/model.py: Transformer Engine's layer spec on a GPU where TE is installed, the local one otherwise
    monkeypatch.setattr(frameworks, "te_installed", lambda: True)
    assert resolve_name("batchlaw", "h100-sxm") == "batchlaw-te"
    assert resolve_name("batchlaw", "cpu-gloo") == "batchlaw-local"
    monkeypatch.setattr(frameworks, "te_installed", lambda: False)
    assert resolve_name("batchlaw", "h100-sxm") == "batchlaw-local"
    assert resolve_name(" Nemo-2 ") == "nemo-2"
    assert predict_table(_rows())["framework"][0] == "batchlaw-local"  # no framework named: batchlaw


def test_kernels_attribute_names_the_preset_that_ran():
    # plugin/_mcore.kernels: module path head + class name of the linear layers megatron-core built
    te = {"linear": "megatron.TELayerNormColumnParallelLinear,megatron.TERowParallelLinear", "norm": "none"}
    local = {"linear": "megatron.ColumnParallelLinear,megatron.RowParallelLinear", "norm": "megatron.WrappedTorchNorm"}
    assert kernels_framework(te) == "batchlaw-te"
    assert kernels_framework(json.dumps(local)) == "batchlaw-local"
    assert kernels_framework({"norm": "x"}) == ""


def test_public_rows_name_their_framework_once():
    r = public_rows()
    fw = r["framework_version"].astype(str)
    assert set(r["framework"]) == {"megatron-lm-2021", "megatron-deepspeed", "megatron-core", "nemo-1", "nemo-2",
                                   "megatron-bridge"}
    assert (r["framework"][np.char.find(fw, "April 2021") >= 0] == "megatron-lm-2021").sum() == 10
    for setting in ("flash_attention", "distributed_optimizer", "tp_comm_overlap", "grad_reduce_in_fp32",
                    "cross_entropy_fusion", "overlap_p2p_comm", "overlap_grad_reduce", "pipeline_split_extra_layers"):
        assert setting not in r  # the presets carry them, not per-row rules


def test_blank_vpp_is_a_range_not_the_plain_schedule():
    # issue 22: where a recipe's VP is not published the interleaved and plain schedules differ by up to 30%;
    # a blank vpp on pp > 1 (a framework that interleaves) is priced over its valid choices
    plain = predict_table(_rows(framework="nemo-2", vpp=1, global_batch=64))  # 16 micro-batches: a 19% bubble
    blank = predict_table(_rows(framework="nemo-2", vpp=np.nan, global_batch=64))
    assert blank["vpp"][0] > 1  # the fastest valid choice that fits: interleaved
    assert blank["pred_iter_time_min_s"][0] == blank["pred_iter_time_s"][0] < plain["pred_iter_time_s"][0]
    assert blank["pred_iter_time_max_s"][0] == pytest.approx(plain["pred_iter_time_s"][0], rel=1e-9)  # plain: slowest
    assert "vpp" in blank["unknowns"][0]
    assert 80 % (4 * blank["vpp"][0]) == 0  # a valid split
    # Megatron-DeepSpeed runs plain 1F1B only: a blank vpp is 1, nothing unknown
    ds = predict_table(_rows(framework="megatron-deepspeed", vpp=np.nan))
    assert ds["vpp"][0] == 1 and ds["unknowns"][0] == ""
    assert ds["pred_iter_time_min_s"][0] == ds["pred_iter_time_max_s"][0]


def test_blank_recompute_and_micro_batch_give_the_spread_of_the_choices_that_fit():
    h = load_system("h100-sxm")
    out = predict_table(_rows(framework="nemo-2", recompute="", micro_batch=np.nan, vpp=5), h)
    times = {}
    for rec in ("none", "selective", "full"):
        for mb in (1, 2, 4, 8, 16, 32):
            one = predict_table(_rows(framework="nemo-2", recompute=rec, micro_batch=mb, vpp=5), h)
            if one["feasible"][0]:
                times[rec, mb] = one["pred_iter_time_s"][0]
    assert out["pred_iter_time_s"][0] == pytest.approx(min(times.values()), rel=1e-12)
    assert out["pred_iter_time_max_s"][0] == pytest.approx(max(times.values()), rel=1e-12)
    assert (out["recompute"][0], out["micro_batch"][0]) == min(times, key=times.get)
    assert ("recompute" in out["unknowns"][0]) == (max(times.values()) > min(times.values()) * (1 + SPAN))


def test_a_preset_that_fixes_recompute_leaves_nothing_unknown():
    c = normalise({k: np.array([v]) for k, v in {**L70, "recompute": "", "framework": "batchlaw-te"}.items()})
    assert c["recompute"][0] == "none" and not c["recompute_unknown"][0]
    c = normalise({k: np.array([v]) for k, v in {**L70, "recompute": "unknown", "framework": "nemo-1"}.items()})
    assert c["recompute_unknown"][0]


def test_a_run_names_its_framework_and_a_typo_is_refused():
    from batchlaw.simulator.plan import COLUMN_KINDS, PLAN_COLUMNS
    from batchlaw.simulator.runconfig import spec_from_dict

    assert PLAN_COLUMNS["framework"] == ("system", "framework")  # a plan column, read back by spec_from_row
    assert COLUMN_KINDS["framework"][0] == "text"
    base = {"model": {"layers": 2, "hidden": 64, "heads": 4}, "train": {"global_batch": 8, "steps": 1}}
    assert spec_from_dict(base).system.framework == "batchlaw"
    with pytest.raises(ValueError, match=r"system.framework = 'nemo3': the framework presets .*nemo-2"):
        spec_from_dict({**base, "system": {"framework": "nemo3"}})


def test_prior_params_names_what_no_fit_has_moved():
    import dataclasses

    from batchlaw.simulator.system import Calibration, Efficiency, prior_params

    bare = dataclasses.replace(load_system("h100-sxm"), calibration=Calibration())
    assert prior_params(bare) == tuple(f.name for f in dataclasses.fields(Efficiency))
    cal = Calibration(n_rows=4, params=("matmul_max", "overhead_s", "overhead_mb_s"), not_identified=("overhead_mb_s",))
    pri = prior_params(dataclasses.replace(bare, calibration=cal))
    assert "matmul_max" not in pri and "overhead_s" not in pri and "overhead_mb_s" in pri and "hbm_eff" in pri


def test_a_grid_is_priced_for_the_trainer_and_its_plan_records_the_kernels(monkeypatch):
    # issue 22 (plan = run): a grid point is priced with the kernels batchlaw's trainer will use, and the plan
    # row (what submit launches) names that preset, which calibrate later checks against the log's kernels
    from batchlaw.simulator.grid import load_grid, run_grid
    from batchlaw.simulator.plan import spec_from_row

    monkeypatch.setattr(frameworks, "te_installed", lambda: True)
    # the shipped grid names batchlaw-te (its cluster has TE); "batchlaw" resolves from what is installed
    g = load_grid("batch-sweep-180m-4b", ["grid.models=['gpt-180m']", "grid.global_batch=[256]", "framework=batchlaw"])
    te = run_grid(g)
    assert set(te["framework"]) == {"batchlaw-te"} and te["flash_attention"].all()
    monkeypatch.setattr(frameworks, "te_installed", lambda: False)
    local = run_grid(g)
    assert set(local["framework"]) == {"batchlaw-local"} and not local["flash_attention"].any()
    assert (local["pred_iter_time_s"] > te["pred_iter_time_s"]).all()  # unfused attention
    row = {k: v[0] for k, v in te.items()}
    assert spec_from_row(row).system.framework == "batchlaw-te"
    other = run_grid(load_grid("batch-sweep-180m-4b", ["grid.models=['gpt-180m']", "grid.global_batch=[256]",
                                                      "framework=nemo-2"]))
    assert set(other["framework"]) == {"nemo-2"}
