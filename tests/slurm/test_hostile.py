"""Tier (d), SLURM files without a cluster: every hostile value of issue 13 (newline, quotes, $(...),
backticks, ';', '#', '%', emoji outside the BMP) in --runs-dir, --python, --env, --set and the CSV
is refused with a one-line error or stays data: `batchlaw submit` runs against a stub sbatch, and
the script it wrote runs under bash in a sandbox directory with the environment submit gave sbatch
and stub srun/scontrol on PATH; nothing executes, and run.toml stays valid TOML."""

import os
import stat
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from batchlaw.tools.cli import main
from batchlaw.tools.submit import SubmitSettings, render_sbatch

REPO = Path(__file__).resolve().parents[2]
BASE = REPO / "configs" / "runs" / "tiny-cpu.toml"
EVIL = "q\"'$(touch PWNED1) `touch PWNED2`; touch PWNED3 #x %j \U0001F600"  # one name, every trick

SRUN = """#!/usr/bin/env bash
# stub srun: record the argument vector, then act like a trainer that completes (or stops)
printf '%s\\0' "$@" > "$SANDBOX/srun.args"
for a in "$@"; do
  case "$a" in
    log.done_marker=*) done_marker=${a#log.done_marker=} ;;
    checkpoint.stop_file=*) stop=${a#checkpoint.stop_file=} ;;
  esac
done
if [ "${STUB_MODE:-done}" = stop ]; then touch "$stop"; else echo completed > "$done_marker"; fi
"""
SBATCH = """#!/usr/bin/env bash
# stub sbatch: record the environment and arguments that submit passes, answer a job id
env -0 > "$SANDBOX/sbatch.env"
printf '%s\\0' "$@" > "$SANDBOX/sbatch.args"
echo 5
"""
SCONTROL = """#!/usr/bin/env bash
# stub scontrol: one host; record requeue targets
case "$1" in
  show) echo n1 ;;
  requeue) printf '%s\\n' "$2" >> "$SANDBOX/requeued" ;;
esac
"""


def _exe(path: Path, text: str) -> None:
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


def _grid(tmp_path, model="tiny"):
    f = tmp_path / "grid.csv"
    f.write_text(f"model,global_batch,tp,pp,nodes,survives\n{model},8,1,1,1,true\n")
    return f


def _sandbox(tmp_path):
    box = tmp_path / f"box {EVIL}"
    (box / "stubs").mkdir(parents=True)
    _exe(box / "stubs" / "srun", SRUN)
    _exe(box / "stubs" / "scontrol", SCONTROL)
    _exe(box / "stubs" / "sbatch", SBATCH)
    pybin = box / f"py {EVIL}"
    pybin.mkdir()
    _exe(pybin / "python", f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')  # a symlink would lose the venv
    env_file = box / f"env {EVIL}.sh"
    env_file.write_text("export BATCHLAW_ENV_SOURCED=1\n")
    return box, pybin / "python", env_file


def _pwned(root: Path) -> list[str]:
    return [str(p) for p in root.rglob("PWNED*")] + [p for p in ("PWNED1", "PWNED2", "PWNED3", "PWNED4") if Path(p).exists()]


def _nul_list(path: Path) -> list[str]:
    return path.read_bytes().decode().split("\0")[:-1]


@pytest.mark.parametrize("mode", ["done", "stop"])
def test_hostile_values_stay_data_when_the_script_runs(tmp_path, monkeypatch, capsys, mode):
    box, python, env_file = _sandbox(tmp_path)
    runs = box / f"runs {EVIL}"
    monkeypatch.chdir(box)
    monkeypatch.setenv("PATH", f"{box / 'stubs'}:{os.environ['PATH']}")
    monkeypatch.setenv("SANDBOX", str(box))
    args = ["submit", str(_grid(tmp_path)), "--base-config", str(BASE), "--runs-dir", str(runs),
            "--time", "00:05:00", "--nproc-per-node", "1", "--python", str(python), "--env", str(env_file)]
    # a newline in a path is refused by the config checks (one line, nothing written) ...
    assert main(args + ["--set", f"log.tensorboard={EVIL}\ntouch PWNED4\n#"]) == 2
    assert "U+000A" in capsys.readouterr().err and not runs.exists()
    # ... and every other hostile character stays data
    code = main(args + ["--set", f"log.tensorboard={EVIL}", "--set", f"data.path=/d/{EVIL}"])
    assert code == 0, capsys.readouterr().err
    run_dir = next(runs.glob("*/run.toml")).parent
    cfg = tomllib.loads((run_dir / "run.toml").read_text())  # emoji as \U0001F600, never surrogates
    assert cfg["log"]["tensorboard"] == EVIL and cfg["data"]["path"] == f"/d/{EVIL}"
    assert cfg["log"]["path"] == str(run_dir / "log.h5")
    script = Path(_nul_list(box / "sbatch.args")[-1])
    header = "#SBATCH --output=\"" + str(runs).replace("%", "%%").replace('"', '\\"') + '/slurm-%A_%a.out"\n'
    assert header in script.read_text()  # what sbatch 22.05 reads back as the path (checked in test_cluster)
    # the script runs as sbatch would run it: with the environment submit gave sbatch, inside a job
    env = dict(item.split("=", 1) for item in _nul_list(box / "sbatch.env"))
    assert env["BATCHLAW_PYTHON"] == str(python) and env["BATCHLAW_ENV"] == str(env_file)
    env |= {"STUB_MODE": mode, "SLURM_JOB_NUM_NODES": "1", "SLURM_JOB_NODELIST": "n1", "SLURM_JOB_ID": "7",
            "SLURM_ARRAY_JOB_ID": "5", "SLURM_ARRAY_TASK_ID": "0", "BATCHLAW_PORT": "1234"}
    out = subprocess.run(["bash", str(script)], cwd=box, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert not _pwned(tmp_path), _pwned(tmp_path)
    args = _nul_list(box / "srun.args")
    assert str(run_dir / "run.toml") in args and str(python) in args  # each path one intact argument
    assert f"log.done_marker={run_dir / 'COMPLETED'}" in args
    if mode == "done":
        assert (run_dir / "COMPLETED").is_file() and not (box / "requeued").exists()
    else:  # stopped on a signal: requeue this array task only, never the whole array
        assert (box / "requeued").read_text() == "5_0\n"


@pytest.mark.parametrize("option", ["--runs-dir", "--python", "--env"])
@pytest.mark.parametrize("char", ["\n", "\r", "\x00", "\x1b", "\x7f", "\u2028"])
def test_control_characters_are_refused_before_anything_is_written(tmp_path, monkeypatch, capsys, option, char):
    monkeypatch.chdir(tmp_path)
    runs = tmp_path / "runs"
    values = {"--runs-dir": str(runs), "--python": sys.executable, "--env": ""}
    if option == "--env":
        values["--env"] = str(tmp_path / f"e{char}touch PWNED\n#.sh")
        if char != "\x00":  # an existing file, so that the check for unsafe characters is what refuses it
            Path(values["--env"]).write_text("true\n")
    else:
        values[option] += f"{char}touch PWNED\n#"
    args = ["submit", str(_grid(tmp_path)), "--base-config", str(BASE), "--time", "00:05:00",
            "--nproc-per-node", "1", "--dry-run"]
    for k, v in values.items():
        if v:
            args += [k, v]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "error" in err and (option in err or "no such file" in err), err
    assert not any(p.name.startswith("runs") for p in tmp_path.iterdir()) and not _pwned(tmp_path)


def test_backslash_in_runs_dir_is_refused(tmp_path):
    s = SubmitSettings(runs_dir=Path("/scratch/a\\b"), base_config=BASE, time="01:00:00")
    with pytest.raises(ValueError, match=r"--runs-dir = .*backslash"):
        render_sbatch(s, nodes=1)


def test_hostile_model_name_in_csv_is_refused_in_one_line(tmp_path, capsys):
    code = main(["submit", str(_grid(tmp_path, model="tiny$(touch PWNED)")), "--base-config", str(BASE),
                 "--runs-dir", str(tmp_path / "runs"), "--time", "00:05:00", "--nproc-per-node", "1", "--dry-run"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert not (tmp_path / "runs").exists() and not _pwned(tmp_path)


@pytest.mark.parametrize("value", [0, -1, True, "2"])
def test_numeric_header_fields_must_be_integers(value):
    s = SubmitSettings(runs_dir=Path("/scratch/runs"), base_config=BASE, time="01:00:00", cpus_per_task=value)
    with pytest.raises(ValueError, match="--cpus-per-task = .*: must be an integer >= 1"):
        render_sbatch(s, nodes=1)


@pytest.mark.parametrize("text", ["\U0001F600", "a\x7fb", "\u2603\n\t\"\\", "\U0010FFFF"])
def test_run_toml_strings_round_trip_through_tomllib(text):
    from batchlaw.simulator.config import to_toml

    assert tomllib.loads(to_toml({"log": {"path": text, "d": {text: 1}}}))["log"] == {"path": text, "d": {text: 1}}
