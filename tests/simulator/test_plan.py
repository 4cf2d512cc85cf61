"""Tier (a), pure: the typed plan (simulator/plan.py) is read the same way by every consumer.

Issue 20: three parsers read yes/no plan cells (``on`` was priced True and launched False; ``ture`` was an
error in one and False in the others). Property: for every plan column and every cell value (valid
spellings in any case and spacing, blanks, typos, hostile numbers, ramps in every spelling), a value that
``submit`` launches (``plan.check_row`` + ``plan.spec_from_row``) is priced with the same meaning
(``table.normalise``, the pricer's reader), logged the same (the RunSpec's JSON in the HDF5 ``config``
attribute read back by the strict loader; the ramp's ``text`` in the ``ramp`` attribute), and survives a
plan written to CSV and read back (``write_plan`` / ``read_plan``). A value submit refuses is refused in one
line. Bounded hypothesis runs (derandomised under CI) plus a fixed list of the spellings that disagreed.
"""

from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis", reason="pip install -e .[dev]")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from batchlaw.simulator import config  # noqa: E402
from batchlaw.simulator.plan import (COLUMN_KINDS, MISSING, PLAN_COLUMNS, check_row, decode_cell,  # noqa: E402
                                     read_plan, spec_from_row, write_plan)
from batchlaw.simulator.rampspec import RampSpec  # noqa: E402
from batchlaw.simulator.runconfig import spec_from_dict  # noqa: E402
from batchlaw.simulator.spec import load_model  # noqa: E402
from batchlaw.simulator.table import feasibility, normalise  # noqa: E402

FUZZ = settings(max_examples=int(os.environ.get("BATCHLAW_FUZZ_EXAMPLES", "150")), deadline=None, database=None,
                derandomize=os.environ.get("CI", "").lower() not in ("", "0", "false", "no"),
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

TINY = load_model("tiny")
BASE_ROW = {"model": "tiny", "global_batch": 8, "tp": 2, "pp": 1, "micro_batch": 2, "nodes": 1, "gpus_per_node": 4,
            "tokens": 64_000, "system": "cpu-gloo"}
# the pricer's view of the same row (a grid's columns: the shape expanded, gpus = nodes x gpus_per_node)
PRICE_ROW = {"layers": TINY.layers, "hidden": TINY.hidden, "heads": TINY.heads, "seq_len": TINY.seq_len,
             "vocab": TINY.vocab, "tp": 2, "pp": 1, "global_batch": 8, "micro_batch": 2, "gpus": 4}

# column -> how the pricer holds it (None: the pricer does not read the column)
_PRICED = {
    "sequence_parallel": lambda c: bool(c["sequence_parallel"][0]),  # tp = 2, so the flag passes through
    "distributed_optimizer": lambda c: bool(c["distributed_optimizer"][0]),
    "overlap_grad_reduce": lambda c: bool(c["overlap_grad_reduce"][0]),
    "tied_embeddings": lambda c: bool(c["tied"][0]),
    "recompute": lambda c: str(c["recompute"][0]),
    "precision": lambda c: "auto" if c["precision_auto"][0] else "fp32" if c["fp32"][0] else str(c["precision"][0]),
    "activation": lambda c: "swiglu" if c["gated"][0] else "gelu",
    "ramp": lambda c: RampSpec.from_config(c["ramp"][0]),
    **{k: (lambda k: lambda c: float(c[k][0]))(k) for k in ("layers", "hidden", "heads", "seq_len", "vocab", "tp",
                                                               "pp", "vpp", "micro_batch", "global_batch")},
}
_SPECIAL_PRICED = {"query_groups", "ffn_hidden"}  # 0 means "the default" to the pricer (heads; the shape's ffn)


def _field(spec, col):
    sec, name = PLAN_COLUMNS[col]
    value = getattr(getattr(spec, sec), name)
    return value


def launched(col, value):
    from batchlaw.simulator.spec import Infeasible

    row = {**BASE_ROW, col: value}
    check_row(row, 0)
    spec = spec_from_row(row)
    try:
        spec.validate()  # submit's pre-launch check at the planned world size
    except Infeasible as exc:
        raise ValueError(str(exc)) from None
    return spec


def _cell(value) -> np.ndarray:
    arr = np.empty(1, dtype=object)
    arr[0] = value  # a list (a staircase written as [4, 4, 64]) stays one cell
    return arr


def priced(col, value):
    """The pricer's reading, or ValueError; an infeasible row (a size it cannot price) counts as refused."""
    c = normalise({**{k: _cell(v) for k, v in PRICE_ROW.items()}, col: _cell(value)})
    ok, reason = feasibility(c)
    if not ok[0] and col in str(reason[0]):
        raise ValueError(reason[0])
    return c


def _same(col, spec, c) -> None:
    want = _field(spec, col)
    got = _PRICED[col](c)
    if isinstance(want, RampSpec):
        assert got == want, (col, got, want)
    elif isinstance(want, (bool, str)):
        assert got == want, (col, got, want)
    else:
        assert got == float(want), (col, got, want)


def check_one(col, value, tmp_path=None) -> None:
    """The property for one cell value."""
    try:
        spec = launched(col, value)
    except ValueError as exc:
        assert "\n" not in str(exc)
        return  # refused at launch: nothing different from the pricing can run
    # logged: the config attribute, and the ramp attribute the trainer writes
    logged = spec_from_dict(json.loads(config.to_json(spec)))
    assert _field(logged, col) == _field(spec, col)
    assert RampSpec.from_config(spec.train.ramp.text) == spec.train.ramp
    if col in _PRICED:
        _same(col, spec, priced(col, value))
    if col in _SPECIAL_PRICED and _field(spec, col):
        assert float(priced(col, value)[col][0]) == float(_field(spec, col))
    if tmp_path is not None:  # a plan on disk reads back to the same run
        write_plan(tmp_path / "p.csv", {k: _cell(v) for k, v in {**BASE_ROW, col: value}.items()},
                   base=None)
        table, _ = read_plan(tmp_path / "p.csv")
        assert spec_from_row({k: v[0] for k, v in table.items()}) == spec


# the spellings that disagreed before (issue 20), and their neighbours
FIXED = {
    "bool": ["on", "ON", " y ", "Yes", "TRUE", "1", "1.0", "off", "N", "no ", "0", "0.0", "false", "ture", "maybe",
             "unknown", "", float("nan"), True, False, 1, 0, 2, "none"],
    "count": ["4", " 4 ", "4.0", 4, 4.0, "2.5", 2.5, "inf", "-inf", float("inf"), "nan", "", "0", "-2", "1e3",
              "many", "0x10", True, "8B"],
    "number": ["3e-4", " 0.001 ", 1e-3, "inf", "nan", "", "-1e-3", "0", "fast", True],
    "choice": ["selective", "SELECTIVE", " full ", "none", "bf16", "BF16", "fp16", "half", "fp8", "auto", "swiglu",
               "gelu", "GeLU", "layernorm", "rope", "", "x"],
    "text": ["batchlaw", "nemo-2", " NeMo-2 ", "megatron-core", "batchlaw-te", "nemo3", "", float("nan")],
    "ramp": ["", "constant", "4,4,64", " 4, 4, 64 ", [4, 4, 64], "0:4 32:8", "0:4 1K:8", "0:8 32:4",
             '{shape = "staircase", start = 4, incr = 4, ramp_samples = 64}', '{shape = "doubling", start = 4, '
             'every_tokens = "1K"}', '{shape = "doubling", incr = 4}', "{shape = ", "4,4", "a,b,c", float("nan")],
}


@pytest.mark.parametrize("col", [c for c in PLAN_COLUMNS if c not in ("model", "system")])
def test_fixed_spellings_read_the_same_everywhere(col, tmp_path):
    kind = COLUMN_KINDS[col][0]
    for value in FIXED[kind]:
        check_one(col, value, tmp_path)


def test_the_spellings_that_disagreed_now_agree():
    """``on`` was priced True and launched False; ``ture`` was an error in the pricer and False at launch."""
    assert launched("overlap_grad_reduce", "on").parallel.overlap_grad_reduce is True
    assert bool(priced("overlap_grad_reduce", "on")["overlap_grad_reduce"][0]) is True
    for where in (lambda v: launched("overlap_grad_reduce", v), lambda v: priced("overlap_grad_reduce", v)):
        with pytest.raises(ValueError, match="overlap_grad_reduce = 'ture'"):
            where("ture")


_CELLS = st.one_of(
    st.sampled_from(sum(FIXED.values(), [])),
    st.text(alphabet=" 0123456789.eE+-,:{}\"=abcdfnorsty", max_size=12),
    st.floats(allow_nan=True, allow_infinity=True), st.integers(-10, 10**6), st.booleans(),
)


@FUZZ
@given(col=st.sampled_from([c for c in PLAN_COLUMNS if c not in ("model", "system")]), value=_CELLS)
def test_any_cell_reads_the_same_everywhere(col, value):
    check_one(col, value)


def test_blank_cells_take_the_base_runs_value():
    base = spec_from_row({**BASE_ROW, "seed": 7, "overlap_grad_reduce": False})
    again = spec_from_row({**BASE_ROW, "seed": "", "overlap_grad_reduce": float("nan")}, base)
    assert again.train.seed == 7 and again.parallel.overlap_grad_reduce is False
    assert decode_cell("seed", " ") is MISSING and decode_cell("tokens", "9B") == 9 * 10**9
    with pytest.raises(ValueError, match="^row 3: micro_batch = '': required"):
        check_row({**BASE_ROW, "micro_batch": ""}, 3)


def test_ramp_in_a_grid_reads_back_equal_through_the_plan(tmp_path):
    """A ramp written in a grid is one value from the grid to the plan CSV, run.toml and the log's JSON."""
    from batchlaw.simulator.grid import load_grid, plan_rows, run_grid

    grid = tmp_path / "g.toml"
    grid.write_text('name = "g"\nsystem = "cpu-gloo"\ngpus_per_node = 1\nbase = "tiny-cpu"\n[grid]\n'
                    'models = ["tiny"]\ntokens_per_param = 1\nglobal_batch = [16]\nmicro_batch = [2]\n'
                    'ramp = ["4,4,64", "{shape = \\"doubling\\", start = 4, every_tokens = \\"2K\\"}"]\n')
    table = run_grid(load_grid(grid))
    write_plan(tmp_path / "plan.csv", table, base=None)
    back, _ = read_plan(tmp_path / "plan.csv")
    want = {RampSpec.from_config("4,4,64"), RampSpec(shape="doubling", start=4, every_tokens=2000)}
    for t in (table, back):
        specs = {spec_from_row({k: v[i] for k, v in t.items()}).train.ramp for i in plan_rows(t)}
        assert specs == want
    for i in plan_rows(back):
        spec = spec_from_row({k: v[i] for k, v in back.items()})
        toml_back = config._loads(config.to_toml(spec), "run.toml")
        assert spec_from_dict(toml_back) == spec
        assert RampSpec.from_config(spec.train.ramp.text) == spec.train.ramp
    assert not math.isnan(float(np.sum(table["gpu_hours"])))
