"""Tier (a), pure: the one rule table (simulator/rules.py) gives the same verdict and the same message
through the trainer's check (``validate_run`` on a RunSpec) and through the vectorised pruner
(``feasibility`` on the grid's RunSpec columns), on 12,000 random specs."""

import numpy as np
import pytest

from batchlaw.simulator import rules
from batchlaw.simulator.plan import spec_to_row
from batchlaw.simulator.runconfig import RunSpec, TrainConfig
from batchlaw.simulator.spec import Infeasible, ModelShape, Parallelism, SystemSpec, validate_run
from batchlaw.simulator.table import feasibility, normalise

N = 12_000


def _random_specs(rng: np.random.Generator) -> list[RunSpec]:
    specs = []
    for _ in range(N):
        heads = int(rng.choice([8, 12, 16, 24]))
        groups = int(rng.choice([0, 0, 2, 4, heads]))
        model = ModelShape(layers=int(rng.choice([6, 8, 12, 16, 24])), hidden=heads * 64, heads=heads,
                           query_groups=groups, seq_len=int(rng.choice([1024, 1026, 2048, 2050])), vocab=1000)
        par = Parallelism(tp=int(rng.choice([1, 2, 4, 8])), pp=int(rng.choice([1, 2, 3, 4])),
                          vpp=int(rng.choice([1, 1, 2, 3])), micro_batch=int(rng.choice([1, 2, 3, 4])),
                          sequence_parallel=bool(rng.integers(2)))
        gb = int(rng.choice([24, 32, 48, 64, 96, 128, 7]))
        ramp = str(rng.choice(["", "", f"{gb // 4},{gb // 4},1000", f"{gb // 2},{gb // 2},500", "3,3,8",
                               f"0:{gb // 2} 100:{gb}", f"0:{gb // 2} 10:{2 * gb}"]))
        system = SystemSpec(name="h100-sxm", gpus_per_node=int(rng.choice([1, 2, 4, 8])),
                            nodes=int(rng.choice([1, 2, 3])))
        specs.append(RunSpec(model=model, parallel=par, system=system,
                             train=TrainConfig(global_batch=gb, ramp=ramp, tokens=10**6)))
    return specs


def test_same_verdict_and_message_from_both_paths():
    specs = _random_specs(np.random.default_rng(0))
    # trainer path: one RunSpec at a time
    ref = []
    for s in specs:
        try:
            validate_run(s.model, s.parallel, world_size=s.system.world_size, global_batch=s.train.global_batch,
                         ramp=s.train.ramp)
            ref.append("")
        except Infeasible as exc:
            ref.append(str(exc))
    # pruner path: the grid's columns (RunSpec field names) of all specs at once
    rows = [spec_to_row(s) for s in specs]
    cols = {k: np.array([r[k] for r in rows], dtype=object if k in ("model", "ramp", "system") else None)
            for k in rows[0]}
    cols["gpus"] = cols["nodes"] * cols["gpus_per_node"]
    ok, reason = feasibility(normalise(cols), trainer=True)
    assert list(reason) == ref
    assert list(ok) == [r == "" for r in ref]
    # the sample exercises every rule of the table, each as the first one broken somewhere
    firsts = {rule.name for rule in rules.RULES for r in ref if r and _rule_of(r) == rule.name}
    expected = {rule.name for rule in rules.RULES} - (set() if not rules.TRAINER_SUPPORTS_VPP else {"trainer_vpp"})
    assert firsts == expected, firsts


def _rule_of(message: str) -> str:
    keys = {"world size": "world_size", "heads ": "heads_tp", "query groups": "groups_tp", "layers ": "layers_pp",
            "needs pp >= 2": "vpp_pp", "(sequence parallel)": "sp_seq_len", "global batch": "batch_granularity",
            "interleaved": "interleave_micro", "ramp: ": "ramp", "batchlaw trainer": "trainer_vpp"}
    return next(v for k, v in keys.items() if k in message)


@pytest.mark.parametrize("values,message", [
    # issue 9: seq_len 1026 at TP 4 with SP: the pruner accepted it, the trainer refused it
    (dict(seq_len=1026, tp=4, sequence_parallel=True), "seq_len 1026 not divisible by tp 4 (sequence parallel)"),
    # issue 9: a ramp that does not fit micro_batch x dp = 2 x 2 was planned, and failed on the cluster
    (dict(ramp="3,3,8"), "ramp: ramp.start = 3: must be a positive multiple of micro_batch x dp = 4"),
])
def test_rules_the_old_copies_disagreed_on(values, message):
    base = dict(tp=1, pp=1, vpp=1, micro_batch=2, seq_len=2048, sequence_parallel=False, ramp="")
    v = {**base, **values}
    m = ModelShape(layers=8, hidden=512, heads=8, seq_len=v["seq_len"])
    p = Parallelism(tp=v["tp"], pp=v["pp"], vpp=v["vpp"], micro_batch=v["micro_batch"],
                    sequence_parallel=v["sequence_parallel"])
    world = 2 * v["tp"] * v["pp"]
    with pytest.raises(Infeasible, match=message.replace("(", r"\(").replace(")", r"\)")):
        validate_run(m, p, world_size=world, global_batch=16, ramp=v["ramp"])
    cols = normalise({"layers": [8], "hidden": [512], "heads": [8], "seq_len": [v["seq_len"]], "vocab": [1000],
                      "tp": [v["tp"]], "pp": [v["pp"]], "vpp": [v["vpp"]], "micro_batch": [v["micro_batch"]],
                      "global_batch": [16], "gpus": [world], "sequence_parallel": [v["sequence_parallel"]],
                      "ramp": np.array([v["ramp"]], dtype=object)})
    ok, reason = feasibility(cols, trainer=True)
    assert not ok[0] and reason[0].startswith(message)


def test_vpp_rule_flips_in_one_place(monkeypatch):
    # issue 9: the grid proposed vpp > 1, which the trainer refused; both follow one flag
    m = ModelShape(layers=8, hidden=512, heads=8)
    cols = normalise({"layers": [8], "hidden": [512], "heads": [8], "seq_len": [2048], "vocab": [1000], "tp": [1],
                      "pp": [2], "vpp": [2], "micro_batch": [1], "global_batch": [8], "gpus": [2]})
    monkeypatch.setattr(rules, "TRAINER_SUPPORTS_VPP", False)
    with pytest.raises(Infeasible, match="vpp 2: the batchlaw trainer runs vpp = 1"):
        validate_run(m, Parallelism(pp=2, vpp=2), world_size=2, global_batch=8)
    assert not feasibility(cols, trainer=True)[0][0] and feasibility(cols)[0][0]  # published rows stay priced
    monkeypatch.setattr(rules, "TRAINER_SUPPORTS_VPP", True)
    assert validate_run(m, Parallelism(pp=2, vpp=2), world_size=2, global_batch=8) == 1
    assert feasibility(cols, trainer=True)[0][0]
