"""``batchlaw probe-cbs RUN``: the critical batch measured directly by branched training.

From checkpoints of a run (its ``checkpoint.dir``), each branch is a real run of the trainer
(``batchlaw train BRANCH/run.toml``; HDF5 log, same data order rules, the base run's layout) that
resumes from a hard-linked copy of the checkpoint at batch k x B with a constant, rescaled LR for a
fixed token window. The branches are planned through the simulator (steps, time and GPU-hours per
branch), run ``--jobs`` at a time (or rendered as a SLURM array with ``--slurm``), and judged as in
``tools/probe.py``. Output in ``--out``: ``probe.json`` and ``probe.csv`` (B_crit per checkpoint,
beside B_simple from the base run's noise scale over the steps before the same checkpoint),
``probe.md``, ``probe_excess.png`` and ``branches/*/log.h5``. See docs/probe.md.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import sys
from pathlib import Path

import numpy as np

from batchlaw.plugin.ckptfiles import complete_checkpoints
from batchlaw.tools.probe import MAX_FACTOR, ProbeSettings, plan_branches, user_window_samples
from batchlaw.tools.probe_plan import NoisePrior, plan_noise, step_scatter


def _ints(text: str, name: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise ValueError(f"{name} = {text!r}: a comma-separated list of integers, e.g. 1,2,4,8,16") from None


def _factors(text: str) -> tuple[int, ...]:
    """--factors: integers (1e3 spelled as a float is read as 1000) in 1..MAX_FACTOR, including 1."""
    out = []
    for v in (v.strip() for v in text.split(",") if v.strip()):
        try:
            f = float(v)
        except ValueError:
            f = math.nan
        if not (math.isfinite(f) and f == int(f)):
            raise ValueError(f"--factors = {text!r}: integers in 1..{MAX_FACTOR} including 1, e.g. 1,2,4,8,16")
        if not 1 <= f <= MAX_FACTOR:
            raise ValueError(f"--factors = {text!r}: each factor must be in 1..{MAX_FACTOR} (the k = 1 branch trains"
                             " k_max times the steps of the largest one)")
        out.append(int(f))
    return tuple(out)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from batchlaw.tools.cli import retire

    parser.add_argument("run", help="the base run: its folder (with log.h5) or its HDF5 log")
    parser.add_argument("--checkpoints", default="all", help="'all' or base steps to probe, e.g. 200,400")
    parser.add_argument("--factors", default="1,2,4,8,16", help="batch multipliers k (with 1), default 1,2,4,8,16")
    parser.add_argument("--lr-rule", default="sqrt", choices=("sqrt", "linear", "none"),
                        help="LR rescaling with k: sqrt (default, Adam), linear, none")
    parser.add_argument("--window-tokens", default="0", help="tokens per branch (K/M suffixes; 0 = planned from"
                        " the noise: see --precision)")
    parser.add_argument("--tolerance", type=float, default=0.01, help="relative loss tolerance vs k = 1 (0.01)")
    parser.add_argument("--tail", type=float, default=0.25, help="fraction of the window whose loss is compared")
    parser.add_argument("--seeds", default="auto", help="data seeds of the branches (0 = the base run's seed), or"
                        " 'auto' (default): as many as the noise plan needs")
    parser.add_argument("--precision", type=float, default=0.5, help="target 80%% half-width of each excess as a"
                        " fraction of the tolerance (0.5); the plan sizes seeds and window for it")
    parser.add_argument("--seed-spread", type=float, default=NoisePrior().seed_spread, help="prior between-seed"
                        " standard deviation of an excess, fraction of the loss (default: measured on the demo)")
    parser.add_argument("--pairing", type=float, default=NoisePrior().pairing, help="prior fraction of the"
                        " per-step loss variance left after pairing branches on the same sequences")
    parser.add_argument("--out-dir", dest="out", help="output folder (default RUN/probe)")
    retire(parser, "--out", "--out-dir DIR (the probe writes a folder)")
    parser.add_argument("--jobs", type=int, default=2, help="branches at a time")
    parser.add_argument("--nproc-per-node", dest="nproc", type=int, default=0,
                        help="ranks per branch (default: the base run's world size)")
    retire(parser, "--nproc", "--nproc-per-node N")
    parser.add_argument("--system", default="", help="system profile for the plan (default: cpu-gloo for a CPU"
                        " run, else h100-sxm)")
    parser.add_argument("--plan-only", action="store_true", help="print the plan and write nothing")
    parser.add_argument("--slurm", metavar="SCRIPT", help="prepare the branches and write a SLURM array script"
                        " instead of running them; then rerun with --collect")
    parser.add_argument("--collect", action="store_true", help="only read finished branches and write results")


def _base(run: str) -> tuple[Path, dict, dict[str, np.ndarray], int]:
    from batchlaw.tools.logs import LogError, open_log, read_columns

    path = Path(run)
    log = path / "log.h5" if path.is_dir() else path
    with open_log(log) as f:
        attrs = dict(f.attrs)
    try:
        cfg = json.loads(attrs["config"])
        layout = json.loads(attrs.get("layout", "{}"))
        world = int(layout.get("world_size", 1))
        cfg["_device"] = str(layout.get("device", "cpu"))  # the device the base run trained on (stripped from branches)
        _anchor_paths(cfg, str(attrs.get("cwd", "")))
    except (KeyError, ValueError, TypeError, AttributeError):
        raise LogError(f"{log}: no readable 'config' attribute; not a batchlaw run log") from None
    cols = read_columns(log, ("step", "consumed_samples", "lr", "global_batch_size", "loss", "gns_g2", "gns_trace"))
    return log, cfg, cols, world


def _anchor_paths(cfg: dict, cwd: str) -> None:
    """Make the base run's relative checkpoint.dir and data.path absolute against the folder its ranks started
    in (the log's ``cwd``), so that a probe started elsewhere branches from that run's checkpoints and data,
    not from whatever those relative paths name here. Logs written before ``cwd`` was recorded keep them."""
    if not cwd:
        return
    for sec, key in (("checkpoint", "dir"), ("data", "path")):
        value = str(cfg.get(sec, {}).get(key, "") or "")
        if value and not Path(value).is_absolute():
            cfg[sec][key] = str(Path(cwd) / value)


def _checkpoints(cfg: dict, cols: dict[str, np.ndarray], which: str) -> list[dict]:
    root = Path(cfg.get("checkpoint", {}).get("dir", ""))
    found = complete_checkpoints(root) if root.name else []
    if not found:
        raise ValueError(f"checkpoint.dir = {str(root)!r}: no complete checkpoint (step_*/meta.json) to branch from")
    wanted = None if which == "all" else set(_ints(which, "--checkpoints"))
    out = []
    for p in found:
        step = int(json.loads((p / "meta.json").read_text())["step"])
        if wanted is not None and step not in wanted:
            continue
        row = np.flatnonzero(cols["step"] == step)
        if not len(row):
            raise ValueError(f"checkpoint {p}: step {step} is not in the base log (logged steps"
                             f" {int(cols['step'][0])}..{int(cols['step'][-1])})")
        i = int(row[-1])
        out.append({"path": str(p), "step": step, "consumed": int(cols["consumed_samples"][i]),
                    "batch": int(cols["global_batch_size"][i]), "lr": float(cols["lr"][i]), "row": i})
    if wanted is not None and len(out) != len(wanted):
        have = ", ".join(str(json.loads((p / "meta.json").read_text())["step"]) for p in found)
        raise ValueError(f"--checkpoints = {which!r}: available checkpoint steps are {have}")
    return out


def _plan_costs(plans, cfg: dict, nproc: int, system: str) -> tuple[np.ndarray, str]:
    """Predicted seconds per branch from the simulator's step-time model (``simulator.table``)."""
    from batchlaw.simulator.table import predict_table

    m, par = cfg["model"], cfg.get("parallel", {})
    system = system or ("cpu-gloo" if cfg.get("_device", "cpu") == "cpu" else "h100-sxm")
    n = len(plans)
    rows = {"layers": [m["layers"]] * n, "hidden": [m["hidden"]] * n, "heads": [m["heads"]] * n,
            "seq_len": [m["seq_len"]] * n, "vocab": [m["vocab"]] * n, "ffn_hidden": [m.get("ffn_hidden", 0)] * n,
            "activation": [m.get("activation", "gelu")] * n, "tp": [par.get("tp", 1)] * n, "pp": [par.get("pp", 1)] * n,
            "gpus": [nproc] * n, "micro_batch": [par.get("micro_batch", 1)] * n, "global_batch": [p.batch for p in plans],
            "precision": ["fp32" if system == "cpu-gloo" else "bf16"] * n, "gpu": [system] * n}
    pred = predict_table({k: np.asarray(v) for k, v in rows.items()}, system)
    return np.asarray(pred["pred_iter_time_s"], float) * np.array([p.num_steps for p in plans]), system


def _branch_config(cfg: dict, plan, seq_len: int, out: Path) -> dict:
    d = {k: dict(v) if isinstance(v, dict) else v for k, v in cfg.items() if not k.startswith("_")}
    t = d["train"]
    t.update(global_batch=plan.batch, ramp="", lr=plan.lr, min_lr=min(float(t.get("min_lr", 0.0)), plan.lr),
             decay="constant", warmup_samples=0, lr_scaling="none", steps=0, seed=plan.seed, eval_every=0,
             exit_after_steps=0, tokens=(plan.consumed + plan.window_samples) * seq_len)
    if not t["ramp"]:
        del t["ramp"]
    d["log"] = {**d.get("log", {}), "path": str(out / "log.h5"), "done_marker": str(out / "COMPLETED"),
                "stdout_every": 0, "tensorboard": ""}
    d["checkpoint"] = {**d.get("checkpoint", {}), "dir": str(out / "ckpt"), "every": 0, "keep": 1, "resume": True,
                       "stop_file": ""}
    return d


def _prepare(plan, cfg: dict, seq_len: int, root: Path) -> Path:
    """The branch folder: run.toml and a hard-linked copy of the checkpoint to resume from."""
    from batchlaw.simulator import config as _config

    from batchlaw.tools.logs import PROBE_MARKER

    (root / "branches").mkdir(parents=True, exist_ok=True)
    (root / "branches" / PROBE_MARKER).touch()
    out = root / "branches" / plan.name
    src = Path(plan.checkpoint)
    dst = out / "ckpt" / src.name
    if not dst.exists():
        tmp = dst.with_name(dst.name + ".tmp")
        tmp.mkdir(parents=True, exist_ok=True)
        for f in src.iterdir():
            target = tmp / f.name
            if not target.exists():
                try:
                    os.link(f, target)
                except OSError:
                    target.write_bytes(f.read_bytes())
        os.replace(tmp, dst)
    _config.write_text_atomic(out / "run.toml", _branch_text(plan, cfg, seq_len, root))
    return out


def _branch_text(plan, cfg: dict, seq_len: int, root: Path) -> str:
    """The branch's run.toml; a one-line error when the branch folder holds one set up otherwise (finished
    branches are reused, so they must have been trained with these settings)."""
    from batchlaw.simulator import config as _config

    out = root / "branches" / plan.name
    text = _config.to_toml(_branch_config(cfg, plan, seq_len, out))
    old = out / "run.toml"
    if old.is_file() and old.read_text() != text:
        raise ValueError(f"branch {out}: was set up with other settings (its run.toml differs: another --lr-rule,"
                         " --window-tokens or base run); use another --out-dir or remove the branch")
    return text


def _run_all(dirs: list[Path], nproc: int, jobs: int) -> None:
    from batchlaw.tools.jobs import run_jobs

    run_jobs(dirs, lambda d: [sys.executable, "-m", "batchlaw.tools", "train", str(d / "run.toml"), "--nproc-per-node",
                              str(nproc)],
             jobs=jobs, progress=lambda done, total, text: print(f"  branch {done}/{total}: {text}", flush=True))


def _slurm_script(dirs: list[Path], nproc: int) -> str:
    for d in dirs:
        if any(ord(ch) < 32 or ord(ch) == 127 for ch in str(d)):
            raise ValueError(f"branch folder {str(d)!r}: control characters cannot go into a SLURM script")
    items = "\n".join(f"  {shlex.quote(str(d / 'run.toml'))}" for d in dirs)
    return (f"#!/bin/bash\n#SBATCH --job-name=probe-cbs\n#SBATCH --array=0-{len(dirs) - 1}\n#SBATCH --nodes=1\n"
            f"#SBATCH --ntasks-per-node=1\nset -euo pipefail\nBRANCHES=(\n{items}\n)\n"
            f"exec {shlex.quote(sys.executable)} -m batchlaw.tools train \"${{BRANCHES[$SLURM_ARRAY_TASK_ID]}}\""
            f" --nproc-per-node {int(nproc)}\n")


def _noise_plans(ckpts: list[dict], cols: dict[str, np.ndarray], settings: ProbeSettings, prior: NoisePrior,
                 seq_len: int) -> list:
    """The noise plan of each checkpoint (``probe_plan``), stored in its dict for ``plan_branches``."""
    out = []
    for c in ckpts:
        row = c["row"]
        n = max(4, int(round((row + 1) * 0.2)))  # the last 20% of the base run's steps before the checkpoint
        loss = cols["loss"][max(0, row + 1 - n):row + 1]
        plan = plan_noise(sigma_step=step_scatter(loss), loss=float(np.nanmean(loss)), base_batch=c["batch"],
                          k_max=max(settings.factors), tail=settings.tail, tolerance=settings.tolerance,
                          precision=settings.precision, prior=prior, num_seeds=len(settings.seeds),
                          window_samples=user_window_samples(settings, c["batch"], seq_len))
        c.update(window_samples=plan.window_samples, num_seeds=plan.num_seeds, tau=plan.tau, noise=plan)
        out.append(plan)
    return out


def run(args: argparse.Namespace) -> int:
    from batchlaw.simulator.ramp import parse_count
    from batchlaw.tools.probe_report import collect, write_outputs

    seeds = () if args.seeds.strip() == "auto" else _ints(args.seeds, "--seeds")
    settings = ProbeSettings(factors=_factors(args.factors), lr_rule=args.lr_rule,
                             window_tokens=parse_count(args.window_tokens, "--window-tokens"),
                             tolerance=args.tolerance, tail=args.tail, seeds=seeds, precision=args.precision)
    prior = NoisePrior(seed_spread=args.seed_spread, pairing=args.pairing)
    if args.jobs < 1:
        raise ValueError(f"--jobs = {args.jobs}: must be >= 1")
    if len(set(settings.factors)) != len(settings.factors):
        raise ValueError(f"--factors = {args.factors}: a value twice (two branches would share a folder)")
    log, cfg, cols, world = _base(args.run)
    base_seed = int(cfg["train"].get("seed", 1234))
    if len({s or base_seed for s in settings.seeds}) != len(settings.seeds):
        raise ValueError(f"--seeds = {args.seeds}: a seed twice (0 is the base run's seed, {base_seed}); two branches"
                         " would share a folder")
    seq_len = int(cfg["model"]["seq_len"])
    nproc = args.nproc or world
    if nproc != world:  # a branch resumes the base checkpoint, which only loads at the layout it was saved with
        raise ValueError(f"--nproc-per-node = {nproc}: the base run's checkpoints were written by {world} ranks;"
                         f" allowed is {world}")
    ckpts = _checkpoints(cfg, cols, args.checkpoints)
    noise = _noise_plans(ckpts, cols, settings, prior, seq_len)
    plans = plan_branches(ckpts, settings, seq_len=seq_len, base_seed=base_seed)
    seconds, system = _plan_costs(plans, cfg, nproc, args.system)
    print(f"probe-cbs: {len(ckpts)} checkpoint(s) x {len(settings.factors)} factors = {len(plans)} branches;"
          f" predicted on {system}: {seconds.sum():.0f} s of training, {seconds.sum() * nproc / 3600:.3g} GPU-hours")
    for c, n in zip(ckpts, noise):
        print(f"  step {c['step']}: {n.line(seq_len)}")
        if not n.reached:
            print(f"  step {c['step']}: WARNING: the seeds and window cannot resolve the tolerance; expect a wide"
                  " interval or 'not determined' (more seeds, a longer window, or a larger --tolerance)")
    for p, s in zip(plans, seconds):
        print(f"  {p.name}: batch {p.batch}, lr {p.lr:.3g}, {p.num_steps} steps, ~{s:.1f} s")
    if args.plan_only:
        return 0
    # absolute: the branches' run.toml paths must not depend on the folder the probe was started from
    out = (Path(args.out) if args.out else log.parent / "probe").absolute()
    for p in plans:  # every branch checked before any is set up
        _branch_text(p, cfg, seq_len, out)
    dirs = [_prepare(p, cfg, seq_len, out) for p in plans]
    if args.slurm:
        script = Path(args.slurm)
        from batchlaw.simulator.config import write_text_atomic

        write_text_atomic(script, _slurm_script(dirs, nproc))
        print(f"wrote {script}: sbatch it, then run the same command with --collect")
        return 0
    if not args.collect:
        _run_all(dirs, nproc, args.jobs)
    results = collect(plans, dirs, ckpts, cols, settings, seq_len)
    path = write_outputs(out, results, settings, plans, seconds, system, log, plans[0].window_samples * seq_len)
    print(f"probe: {path}")
    for r in results:
        print(f"  step {r['estimate'].step}: B_crit {r['estimate'].bound} {r['estimate'].b_crit:.3g} sequences"
              f" (80% {r['estimate'].lo:.3g} .. {r['estimate'].hi:.3g}); B_simple {r['b_simple']:.3g}")
    return 0
