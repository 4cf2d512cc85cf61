"""Turn a pruned grid into run directories and one sbatch job array per node count.

Nothing reaches a shell as code: each run's settings go into its own ``run.toml`` (TOML string
escaping), the sbatch script reads only directory paths from a list file, the sbatch command is a
list of arguments (no shell), and the printed command is ``shlex``-quoted. Everything is rendered
and validated before the first ``sbatch``; files are written to temporary names and renamed.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from batchlaw.simulator import config as _config
from batchlaw.simulator.runconfig import load_run_config
from batchlaw.simulator.spec import validate_run

__all__ = ["SubmitSettings", "plan_runs", "render_sbatch", "submit"]

TEMPLATE = Path(__file__).resolve().parents[1] / "slurm" / "train.sbatch"
_SLUG = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True, kw_only=True)
class SubmitSettings:
    """What the rendered script and the sbatch call need."""

    runs_dir: Path
    base_config: Path
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


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


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


def check_settings(s: SubmitSettings, nodes: int = 1) -> None:
    """ValueError (one line: option, value, what is allowed) for any setting the script cannot take
    as data; ``submit`` calls it first, before any path is resolved or written."""
    if not re.fullmatch(r"\d+(-\d+)?(:\d+){0,2}|\d+", s.time or ""):
        raise ValueError(f"--time = {s.time!r}: required, e.g. 02:00:00 or 1-00:00:00")
    for name, value in (("--partition", s.partition), ("--account", s.account), ("--job-name", s.job_name)):
        if value and not re.fullmatch(r"[A-Za-z0-9._-]+", value):
            raise ValueError(f"{name} = {value!r}: allowed are letters, digits, '.', '_' and '-'")
    for name, value, low in (("nodes", nodes, 1), ("--cpus-per-task", s.cpus_per_task, 1),
                             ("--signal-lead", s.signal_lead_s, 0), ("--gpus-per-node", s.gpus_per_node, 0),
                             ("--nproc-per-node", s.nproc_per_node, 1)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise ValueError(f"{name} = {value!r}: must be an integer >= {low}")
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


def _row_overrides(row: dict[str, Any]) -> list[str]:
    out = [f"model.name={row['model']}", f"train.global_batch={int(row['global_batch'])}",
           f"parallel.tp={int(row['tp'])}", f"parallel.pp={int(row['pp'])}"]
    for key, col in (("parallel.vpp", "vpp"), ("parallel.micro_batch", "micro_batch")):
        if col in row and np.isfinite(float(row[col])):
            out.append(f"{key}={int(row[col])}")
    if "lr" in row and np.isfinite(float(row["lr"])):
        out.append(f"train.lr={float(row['lr'])}")
    if "tokens" in row and np.isfinite(float(row["tokens"])):
        out.append(f"train.tokens={int(row['tokens'])}")
        out.append("train.steps=0")
    for key, col in (("parallel.recompute", "recompute"),):
        if col in row and str(row[col]) not in ("", "nan"):
            out.append(f"{key}={row[col]}")
    for key, col in (("parallel.sequence_parallel", "sequence_parallel"),
                     ("parallel.distributed_optimizer", "distributed_optimizer")):
        if col in row and str(row[col]) not in ("", "nan"):
            out.append(f"{key}={'true' if str(row[col]).lower() in ('true', '1', '1.0', 'yes') else 'false'}")
    return out


def plan_runs(table: dict[str, np.ndarray], s: SubmitSettings) -> list[dict[str, Any]]:
    """One planned run per surviving row: its directory, resolved config and node count."""
    keep = np.asarray(table["survives"]).astype(str) if "survives" in table else np.full(len(table["model"]), "true")
    runs = []
    for i in np.flatnonzero(np.isin(np.char.lower(keep.astype(str)), ("true", "1", "1.0"))):
        row = {k: v[i] for k, v in table.items()}
        name = _SLUG.sub("_", f"{row['model']}-b{int(row['global_batch'])}-tp{int(row['tp'])}-pp{int(row['pp'])}"
                         + (f"-lr{float(row['lr']):g}" if "lr" in row else ""))
        run_dir = (s.runs_dir / name).resolve()
        sets = list(s.overrides) + _row_overrides(row) + [
            f"log.path={run_dir / 'log.h5'}", f"checkpoint.dir={run_dir / 'ckpt'}"]
        cfg = load_run_config(s.base_config, sets)
        nodes = int(row.get("nodes", 1)) if "nodes" in row else 1
        world = nodes * s.nproc_per_node
        validate_run(cfg.model, cfg.parallel, world_size=world, global_batch=cfg.train.global_batch)
        if cfg.data.kind == "indexed" and not Path(f"{cfg.data.path}.idx").is_file():
            raise ValueError(f"data.path = {cfg.data.path!r}: no {cfg.data.path}.idx (batchlaw data build)")
        runs.append({"name": name, "dir": run_dir, "config": cfg, "nodes": nodes,
                     "done": (run_dir / "COMPLETED").is_file()})
    if not runs:
        raise ValueError("submit: the table has no surviving rows")
    return runs


def submit(table: dict[str, np.ndarray], s: SubmitSettings, *, dry_run: bool) -> list[dict[str, Any]]:
    """Write run directories and submit one job array per node count; returns what was done."""
    check_settings(s)  # unsafe characters first: nothing below may resolve or write such a path
    if s.env_file and not Path(s.env_file).is_file():
        raise ValueError(f"--env {s.env_file!r}: no such file")
    runs = plan_runs(table, s)
    scripts = {nodes: render_sbatch(s, nodes) for nodes in {r["nodes"] for r in runs}}  # all checks first
    results = []
    for nodes, script in sorted(scripts.items()):
        todo = [r for r in runs if r["nodes"] == nodes and not r["done"]]
        skipped = [r for r in runs if r["nodes"] == nodes and r["done"]]
        entry = {"nodes": nodes, "runs": [r["name"] for r in todo], "skipped": [r["name"] for r in skipped]}
        if not todo:
            results.append({**entry, "job_id": None, "command": None})
            continue
        for r in todo:
            _atomic_write(r["dir"] / "run.toml", _config.to_toml(r["config"]))
        list_file = s.runs_dir.resolve() / f"runs-{nodes}n.txt"
        _atomic_write(list_file, "".join(f"{r['dir']}\n" for r in todo))
        script_file = s.runs_dir.resolve() / f"train-{nodes}n.sbatch"
        _atomic_write(script_file, script)
        cmd = ["sbatch", "--parsable", f"--array=0-{len(todo) - 1}", str(script_file)]
        env = {**os.environ, "BATCHLAW_RUN_LIST": str(list_file),
               "BATCHLAW_NPROC_PER_NODE": str(s.nproc_per_node)}
        if s.python:
            env["BATCHLAW_PYTHON"] = s.python
        if s.env_file:
            env["BATCHLAW_ENV"] = str(Path(s.env_file).resolve())
        shown = " ".join(shlex.quote(f"{k}={env[k]}") for k in ("BATCHLAW_RUN_LIST", "BATCHLAW_PYTHON", "BATCHLAW_ENV")
                         if k in env) + " " + shlex.join(cmd)
        job_id = None
        if not dry_run:
            out = subprocess.run(cmd, env=env, capture_output=True, text=True)
            if out.returncode != 0:
                raise ValueError(f"sbatch failed: {out.stderr.strip() or out.stdout.strip()}")
            job_id = out.stdout.strip().split(";")[0]
        results.append({**entry, "job_id": job_id, "command": shown})
    return results
