"""Turn a pruned grid into run directories and one sbatch job array per node count.

The runs are exactly the plan ``batchlaw simulate`` priced: ``grid.plan_rows`` picks one row per
surviving (model, batch, ramp, lr, ...) point, its fastest layout (every surviving layout with
``all_layouts``), and ``plan.spec_from_row`` turns each row into its RunSpec on top of the base
run config; no field is renamed or dropped on the way. ``--dry-run`` writes nothing.

Nothing reaches a shell as code: each run's settings go into its own ``run.toml`` (TOML string
escaping), the sbatch script reads only directory paths from a list file, the sbatch command is a
list of arguments (no shell), and the printed command is ``shlex``-quoted. Everything is rendered
and validated before the first ``sbatch``; files are written to temporary names and renamed.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from batchlaw.simulator import config as _config
from batchlaw.simulator.grid import plan_rows
from batchlaw.simulator.resources import template
from batchlaw.simulator.plan import PLAN_COLUMNS, check_row, has_token_budget, spec_from_row
from batchlaw.simulator.runconfig import find_run_config, in_run_dir
from batchlaw.tools import runstate

__all__ = ["SubmitSettings", "job_environment", "missing_data", "plan_runs", "render_sbatch", "runs_table", "submit", "write_runs"]

TEMPLATE = template("train.sbatch")  # shipped inside the package (importlib.resources)
_SLUG = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True, kw_only=True)
class SubmitSettings:
    """What the rendered script and the sbatch call need."""

    runs_dir: Path
    base_config: Path | str | Mapping[str, Any] | None
    """The base run: a run config name or TOML (read now), or a resolved RunSpec dict (a plan's sidecar)."""
    time: str
    job_name: str = "batchlaw"
    cpus_per_task: int = 8
    nproc_per_node: int = 8
    signal_lead_s: int = 120
    partition: str = ""
    account: str = ""
    gpus_per_node: int = 0
    env_file: str = ""
    python: str = ""
    overrides: tuple[str, ...] = ()
    all_layouts: bool = False
    force: bool = False


_atomic_write = _config.write_text_atomic


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def check_script_value(name: str, value: str) -> str:
    """``value`` if it may reach the sbatch script or its environment as data; ValueError otherwise.

    Control characters (newline, CR, NUL, ESC, DEL, C1, line separators) are refused: the run list
    is one path per line and an ``#SBATCH`` line ends at a newline. Lone surrogates (undecodable
    bytes) are refused too. Quotes, ``$``, backticks, spaces and non-ASCII stay data.
    """
    bad = _CONTROL.search(value) or re.search(r"[\ud800-\udfff]", value)
    if bad:
        raise ValueError(f"{name} = {value!r}: contains the control or undecodable character "
                         f"{bad.group(0)!r} at {bad.start()}; use printable characters only")
    return value


def _sbatch_output(runs_dir: str) -> str:
    """The ``--output`` value for an ``#SBATCH`` line, double-quoted so spaces, quotes and ``#`` stay
    data (sbatch 22.05 reads ``"..."`` with ``\\"`` inside; a bare backslash escape does not work);
    ``%`` doubled so SLURM's file-name patterns leave it alone. A backslash is refused: slurmd drops it
    (it marks a file name without patterns), so the log would go to another directory."""
    if "\\" in runs_dir:
        raise ValueError(f"--runs-dir = {runs_dir!r}: contains a backslash, which SLURM drops from --output paths")
    return '"' + runs_dir.replace("%", "%%").replace('"', '\\"') + '/slurm-%A_%a.out"'


def time_limit_s(text: str) -> int:
    """Seconds of a SLURM ``--time`` (``M``, ``M:S``, ``H:M:S``, ``D-H``, ``D-H:M``, ``D-H:M:S``; sbatch(1));
    a one-line ValueError for any other text, a field out of range or a zero limit."""
    m = re.fullmatch(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?", text or "")
    bad = ValueError(f"--time = {text!r}: required, e.g. 02:00:00 or 1-00:00:00 (minutes and seconds < 60,"
                     " hours < 24 after a day count)")
    if not m:
        raise bad
    days, a, b, c = (None if g is None else int(g) for g in m.groups())
    if days is not None:  # D-H[:M[:S]]
        h, mi, sec = a, b or 0, c or 0
    elif c is not None:  # H:M:S
        h, mi, sec = a, b, c
    else:  # M or M:S
        h, mi, sec = 0, a, b or 0
    if (days is not None and h >= 24) or ((days is not None or c is not None) and mi >= 60) or sec >= 60:
        raise bad
    total = (((days or 0) * 24 + h) * 60 + mi) * 60 + sec
    if total <= 0:
        raise ValueError(f"--time = {text!r}: the limit must be longer than zero")
    return total


def check_settings(s: SubmitSettings, nodes: int = 1) -> None:
    """ValueError (one line: option, value, what is allowed) for any setting the script cannot take
    as data; ``submit`` calls it first, before any path is resolved or written."""
    limit = time_limit_s(s.time)
    for name, value in (("--partition", s.partition), ("--account", s.account), ("--job-name", s.job_name)):
        if value and not re.fullmatch(r"[A-Za-z0-9._-]+", value):
            raise ValueError(f"{name} = {value!r}: allowed are letters, digits, '.', '_' and '-'")
    for name, value, low in (("nodes", nodes, 1), ("--cpus-per-task", s.cpus_per_task, 1),
                             ("--signal-lead", s.signal_lead_s, 0), ("--gpus-per-node", s.gpus_per_node, 0),
                             ("--nproc-per-node", s.nproc_per_node, 1)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise ValueError(f"{name} = {value!r}: must be an integer >= {low}")
    if s.gpus_per_node not in (0, s.nproc_per_node):
        raise ValueError(f"--gpus-per-node = {s.gpus_per_node}: the plan runs {s.nproc_per_node} ranks per node, one"
                         f" GPU each; allowed are {s.nproc_per_node} or 0 (omit the line where the cluster hands out"
                         " whole nodes)")
    if s.signal_lead_s >= limit:
        raise ValueError(f"--signal-lead = {s.signal_lead_s}: must be shorter than --time = {s.time} ({limit} s),"
                         " or the checkpoint signal comes before training starts and the job requeues at once")
    for name, value in (("--runs-dir", str(s.runs_dir)), ("--python", s.python), ("--env", s.env_file)):
        check_script_value(name, value)
    check_script_value("--runs-dir (made absolute)", os.path.abspath(s.runs_dir))  # the working directory too
    _sbatch_output(str(s.runs_dir))


def render_sbatch(s: SubmitSettings, nodes: int) -> str:
    """The sbatch script with its header fields filled; ValueError on an unset or unsafe setting."""
    check_settings(s, nodes)
    extra = [f"#SBATCH --partition={s.partition}"] if s.partition else []
    extra += [f"#SBATCH --account={s.account}"] if s.account else []
    extra += [f"#SBATCH --gpus-per-node={s.gpus_per_node}"] if s.gpus_per_node else []
    fields = {"JOB_NAME": s.job_name, "NODES": str(int(nodes)), "CPUS_PER_TASK": str(int(s.cpus_per_task)),
              "TIME": s.time, "OUTPUT": _sbatch_output(str(s.runs_dir)),
              "SIGNAL_LEAD_S": str(int(s.signal_lead_s)), "EXTRA_SBATCH": "\n".join(extra)}
    text = re.sub(r"@([A-Z_]+)@", lambda m: fields.get(m.group(1), m.group(0)), TEMPLATE.read_text())
    left = re.findall(r"@[A-Z_]+@", text)
    assert not left, f"unrendered fields {left}"
    return text


def _ramp_tag(ramp) -> str:
    """A short, stable run-name part for a ramp (a ``RampSpec``): its shape and a checksum of its text."""
    return f"{ramp.shape}{zlib.crc32(ramp.text.encode()):08x}"


def _base(s: SubmitSettings, tokens_planned: bool = False) -> dict[str, Any]:
    """The base run config with the --set overrides; a --set of a planned column is refused (and of
    ``train.steps`` when the plan has token budgets, which bound every run: ``spec_from_row``)."""
    for item in s.overrides:
        key = item.partition("=")[0].strip()
        sec, _, name = key.partition(".")
        col = sec if name == "name" and sec in ("model", "system") else name
        if PLAN_COLUMNS.get(col) == (sec, name) or (key == "train.steps" and tokens_planned):
            raise ValueError(f"--set {key}: a planned column; change the grid (or simulate --set) instead,"
                             " so that what is launched is what was priced")
    if isinstance(s.base_config, Mapping):
        data = json.loads(json.dumps(s.base_config))  # a deep copy of the resolved base
    else:
        data = _config.load_toml(find_run_config(s.base_config)) if s.base_config else {}
    return _config.apply_overrides(data, s.overrides)


def plan_runs(table: dict[str, np.ndarray], s: SubmitSettings) -> list[dict[str, Any]]:
    """The planned runs (``grid.plan_rows``): name, directory, RunSpec, node count, completion."""
    base = _base(s, tokens_planned=any(has_token_budget(v) for v in table.get("tokens", [])))
    rows = plan_rows(table, all_layouts=s.all_layouts)
    if not len(rows):
        raise ValueError("submit: the table has no surviving rows")
    runs, names = [], set()
    for i in rows:
        row = {k: v[i] for k, v in table.items()}
        check_row(row, int(i))  # inf, NaN, 0 or text in a count: one line, before int() of it
        if "gpus_per_node" not in table:
            row["gpus_per_node"] = s.nproc_per_node
        elif int(float(row["gpus_per_node"])) != s.nproc_per_node:
            raise ValueError(f"--nproc-per-node = {s.nproc_per_node}: the plan has gpus_per_node ="
                             f" {int(float(row['gpus_per_node']))}; simulate the grid with that many")
        spec = spec_from_row(row, base)
        name = _SLUG.sub("_", f"{spec.model.name}-b{spec.train.global_batch}-tp{spec.parallel.tp}-pp{spec.parallel.pp}"
                         + (f"-lr{spec.train.lr:g}" if "lr" in table else "")
                         + ("" if spec.train.ramp.is_constant else f"-ramp{_ramp_tag(spec.train.ramp)}"))
        while name in names:
            name += "_"
        names.add(name)
        run_dir = (s.runs_dir / name).resolve()
        spec = in_run_dir(spec, run_dir)
        spec.validate()  # the trainer's pre-launch check, at the planned world size
        runs.append({"name": name, "dir": run_dir, "config": spec, "nodes": spec.system.nodes, "row": i,
                     "done": (run_dir / "COMPLETED").is_file()})
    return runs


def missing_data(runs: list[dict[str, Any]]) -> list[str]:
    """One line per indexed dataset the planned runs read that is not there (yet): the real submit
    refuses with it, ``--dry-run`` prints it as a note (the data need only exist when the jobs start)."""
    from batchlaw.plugin.prelaunch import check_indexed_data

    lines = []
    for path in dict.fromkeys(r["config"].data.path for r in runs if r["config"].data.kind == "indexed"):
        try:
            check_indexed_data(path)
        except ValueError as exc:
            lines.append(str(exc))
    return lines


def runs_table(runs: list[dict[str, Any]], table: dict[str, np.ndarray]) -> str:
    """The planned runs, one line each (what ``--dry-run`` prints)."""
    lines = [f"{'run':34s} {'nodes':>5s} {'tp,pp,mb':>9s} {'ramp':>14s} {'precision':>9s} {'GPU-h':>8s} state"]
    for r in runs:
        c = r["config"]
        gpu_h = float(table["gpu_hours"][r["row"]]) if "gpu_hours" in table else float("nan")
        lay = f"{c.parallel.tp},{c.parallel.pp},{c.parallel.micro_batch}"
        lines.append(f"{r['name']:34s} {r['nodes']:5d} {lay:>9s} {c.train.ramp.shape if not c.train.ramp.is_constant else '-':>14s}"
                     f" {c.train.precision:>9s} {gpu_h:8.0f} {r.get('state') or ('completed' if r['done'] else '-')}")
    return "\n".join(lines)


def _todo(runs: list[dict[str, Any]], nodes: int) -> list[dict[str, Any]]:
    """The runs of one node count to submit: not completed, running or queued."""
    return [r for r in runs if r["nodes"] == nodes and not r["done"] and not r.get("state")]


def write_runs(runs: list[dict[str, Any]], s: SubmitSettings, nodes: int, script: str) -> tuple[Path, Path]:
    """Write each run's ``run.toml`` (the RunSpec), the run list and the script of one node count."""
    todo = _todo(runs, nodes)
    for r in todo:
        _atomic_write(r["dir"] / "run.toml", _config.to_toml(r["config"]))
    list_file = s.runs_dir.resolve() / f"runs-{nodes}n.txt"
    _atomic_write(list_file, "".join(f"{r['dir']}\n" for r in todo))
    script_file = s.runs_dir.resolve() / f"train-{nodes}n.sbatch"
    _atomic_write(script_file, script)
    return list_file, script_file


def job_environment(s: SubmitSettings, list_file: Path, base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment sbatch hands the job: this one, the script's settings, and ``BASH_ENV`` moved
    to ``BATCHLAW_BASH_ENV`` (bash would source it before the script's first line, so a signal during
    it, seconds with Lmod, would kill the shell before its trap is set; the script sources it after)."""
    env = dict(os.environ if base is None else base)
    env.update({"BATCHLAW_RUN_LIST": str(list_file), "BATCHLAW_NPROC_PER_NODE": str(s.nproc_per_node)})
    if s.python:
        env["BATCHLAW_PYTHON"] = s.python
    if s.env_file:
        env["BATCHLAW_ENV"] = str(Path(s.env_file).resolve())
    if env.get("BASH_ENV"):
        env["BATCHLAW_BASH_ENV"] = env.pop("BASH_ENV")
    return env


def submit(table: dict[str, np.ndarray], s: SubmitSettings, *, dry_run: bool) -> list[dict[str, Any]]:
    """Submit one job array per node count (writing run directories first); with ``dry_run`` write
    nothing and return what would be done, each entry with its rendered ``script``."""
    check_settings(s)  # unsafe characters first: nothing below may resolve or write such a path
    if s.env_file and not Path(s.env_file).is_file():
        raise ValueError(f"--env {s.env_file!r}: no such file")
    runs = plan_runs(table, s)
    scripts = {nodes: render_sbatch(s, nodes) for nodes in {r["nodes"] for r in runs}}  # all checks first
    notes = runstate.annotate(runs)
    missing = missing_data([r for r in runs if not r["state"]])
    if missing and not dry_run:
        raise ValueError(missing[0])
    changed = runstate.changed_started_runs(runs, _config.to_toml)
    if changed and not s.force:
        r, diff = changed[0]
        raise ValueError(f"{r['dir'] / 'run.toml'}: the run has started and its run.toml differs from the plan"
                         f" ({'; '.join(diff[:4])}{'; ...' if len(diff) > 4 else ''}){f' (and {len(changed) - 1} more runs)' if len(changed) > 1 else ''};"
                         " --force writes the planned one, or change the grid to match")
    results = []
    for nodes, script in sorted(scripts.items()):
        todo = _todo(runs, nodes)
        skipped = [r for r in runs if r["nodes"] == nodes and r["state"]]
        entry = {"nodes": nodes, "runs": [r["name"] for r in todo], "skipped": [r["name"] for r in skipped],
                 "states": {k: sum(r["state"] == k for r in skipped) for k in ("completed", "running", "queued")},
                 "script": script, "planned": [r for r in runs if r["nodes"] == nodes], "notes": notes}
        if not todo:
            results.append({**entry, "job_id": None, "command": None})
            continue
        list_file = s.runs_dir.resolve() / f"runs-{nodes}n.txt"
        script_file = s.runs_dir.resolve() / f"train-{nodes}n.sbatch"
        cmd = ["sbatch", "--parsable", f"--array=0-{len(todo) - 1}", str(script_file)]
        env = job_environment(s, list_file)
        shown = " ".join(shlex.quote(f"{k}={env[k]}") for k in ("BATCHLAW_RUN_LIST", "BATCHLAW_NPROC_PER_NODE",
                                                                 "BATCHLAW_PYTHON", "BATCHLAW_ENV")
                         if k in env) + " " + shlex.join(cmd)
        job_id = None
        if not dry_run:
            write_runs(runs, s, nodes, script)
            out = subprocess.run(cmd, env=env, capture_output=True, text=True)
            if out.returncode != 0:
                said = (out.stderr.strip() or out.stdout.strip() or f"exit {out.returncode}").splitlines()
                raise ValueError(f"sbatch failed: {said[-1]}")  # one line: sbatch's last word is its reason
            job_id = out.stdout.strip().split(";")[0]
            for i, r in enumerate(todo):  # the task each run is: the next submit sees it queued
                runstate.record_submitted(r["dir"], f"{job_id}_{i}")
        results.append({**entry, "job_id": job_id, "command": shown})
    return results
