"""Tier (b), CPU + gloo + real megatron-core, packaging: build the wheel, install it (not editable) into
a fresh venv and, from a folder outside the checkout, run what a new user runs: simulate on the
shipped grid by name, list the shipped models, submit --dry-run, a tiny train, analyze, calibrate,
a model added through ``$BATCHLAW_CONFIG_PATH``, and the ``fit`` examples of docs/laws.md on the public data
shipped in the wheel.

The fresh venv reuses the already installed dependencies (numpy, scipy, h5py, torch, megatron-core)
through a ``.pth`` line to this interpreter's site-packages, so the test installs only batchlaw and
takes about a minute; the editable install of the checkout is not visible there (its finder is a
``.pth`` hook that a plain path line does not run)."""

import os
import re
import shlex
import site
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.wheel, pytest.mark.dist]


def _run(cmd, cwd, env, timeout=300):
    out = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, f"{cmd} failed ({out.returncode}):\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    pytest.importorskip("megatron.core")
    root = tmp_path_factory.mktemp("wheel")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "BATCHLAW_CONFIG_PATH", "BATCHLAW_CONFIG_DIR")}
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(root / "dist"),
          str(REPO)], root, env)
    wheel = next((root / "dist").glob("batchlaw-*.whl"))
    venv = root / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], root, env)
    py = venv / "bin" / "python"
    _run([sys.executable, "-m", "pip", "--python", str(py), "install", "-q", "--no-deps", "--no-index", str(wheel)],
         root, env)
    purelib = Path(_run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], root, env).strip())
    deps = [sysconfig.get_paths()["purelib"], *site.getsitepackages()]
    (purelib / "_batchlaw_test_deps.pth").write_text("\n".join(dict.fromkeys(deps)) + "\n")
    work = root / "elsewhere"
    work.mkdir()
    return {"bin": venv / "bin", "py": py, "work": work, "env": {**env, "PATH": f"{venv / 'bin'}:{env['PATH']}",
                                                                  "OMP_NUM_THREADS": "1"}}


def test_installed_package_is_the_wheel(installed):
    where = _run([str(installed["py"]), "-c", "import batchlaw.simulator, batchlaw.tools;"
                  "from batchlaw.simulator import resources; print(batchlaw.simulator.__file__);"
                  "print(resources.shipped_root()); print(resources.template())"], installed["work"], installed["env"])
    lines = where.split()
    assert all(str(REPO) not in line for line in lines), where
    assert lines[1].endswith("batchlaw/configs") and lines[2].endswith("batchlaw/slurm/train.sbatch")


def test_the_loop_from_outside_the_checkout(installed):
    b, work, env = installed["bin"], installed["work"], installed["env"]
    out = _run([str(b / "batchlaw"), "simulate", "batch-sweep-180m-4b", "--out", "sweep.csv"], work, env)
    plan = next(line for line in out.splitlines() if line.startswith("plan: "))
    assert "grid 'batch-sweep-180m-4b' on h100-sxm" in out
    assert "gpt-4b" in _run([str(b / "batchlaw"), "simulate", "--models"], work, env)
    dry = _run([str(b / "batchlaw"), "submit", "sweep.csv", "--time", "04:00:00", "--dry-run",
                "--set", "data.kind=synthetic"], work, env)
    assert plan in dry and "#!/usr/bin/env bash" in dry
    assert not (work / "runs").exists()
    trained = _run([str(b / "batchlaw"), "train", "tiny-cpu", "--nproc-per-node", "1", "--set", "train.steps=4",
                    "--set", "log.path=runs/tiny/log.h5", "--set", "checkpoint.dir=", "--set", "log.stdout_every=0"],
                   work, env, timeout=240)
    assert (work / "runs" / "tiny" / "log.h5").is_file()
    assert trained.splitlines()[-1] == f"batchlaw train: HDF5 log written: {work / 'runs' / 'tiny' / 'log.h5'}"
    # the logged config reads back through the strict loader to the RunSpec that was launched
    same = _run([str(installed["py"]), "-c", "import h5py, json; from batchlaw.simulator.runconfig import *;"
                 "a = h5py.File('runs/tiny/log.h5')['/'].attrs;"
                 "sets = ['train.steps=4', 'log.path=runs/tiny/log.h5', 'checkpoint.dir=', 'log.stdout_every=0',"
                 " 'system.gpus_per_node=1', 'system.nodes=1'];"  # batchlaw train: one node of 1 rank
                 "print(spec_from_dict(json.loads(a['config'])) == load_run_config('tiny-cpu', sets),"
                 " json.loads(a['layout'])['device'], a['cwd'])"], work, env)
    assert same.split() == ["True", "cpu", str(work)]  # cwd: where relative config paths point
    report = _run([str(b / "batchlaw"), "analyze", "runs", "--out-dir", "report"], work, env)
    assert "report:" in report and (work / "report" / "runs.csv").is_file()
    _run([str(b / "batchlaw"), "calibrate", "runs", "--system", "cpu-gloo", "--params", "overhead_s",
          "--out", "cpu.toml"], work, env)
    assert "[efficiency]" in (work / "cpu.toml").read_text()
    refused = subprocess.run([str(b / "batchlaw"), "calibrate", "runs", "--system", "h100-sxm", "--out", "h.toml"],
                             cwd=work, env=env, capture_output=True, text=True)
    assert refused.returncode == 2 and "ran on cpu" in refused.stderr and not (work / "h.toml").exists()


def test_design_and_next_wave_from_outside_the_checkout(installed, tmp_path):
    """Issue 19: design and design --next work from a wheel, on the shipped studies and on a user's TOML, and
    submit --dry-run prints the line design printed. The submit of the shipped grid without data works too
    (issue 20: the dry run notes the missing data instead of failing)."""
    b, work, env = installed["bin"], installed["work"], installed["env"]
    fast = ["--set", "design.simulations=8", "--set", "budget_gpu_hours=0"]
    out = _run([str(b / "batchlaw"), "design", "batch-sweep-180m-4b", "--out", "wave1.csv", *fast], work, env)
    line = next(x for x in out.splitlines() if x.startswith("plan: "))
    dry = _run([str(b / "batchlaw"), "submit", "wave1.csv", "--time", "72:00:00", "--dry-run"], work, env)
    assert line in dry
    mine = work / "my-study.toml"
    mine.write_text('name = "mine"\nsystem = "cpu-gloo"\ngpus_per_node = 1\nbase = "tiny-cpu"\nmax_nodes = 1\n'
                    '[sizes]\nmodels = ["demo-xs", "demo-s", "demo-m"]\ntokens_per_param = 2\n'
                    '[target]\nb_opt_factor = 2\n[prior]\nbasin = "demo-walk-basin"\n'
                    '[lr]\nrule = "fixed"\nvalue = 0.05\non_purpose = true\n'
                    '[design]\nnodes = [1]\ntp = [1]\npp = [1]\nmicro_batch = [2]\nmin_batch = 4\n')
    (work / "none").mkdir()
    nxt = _run([str(b / "batchlaw"), "design", str(mine), "--next", "none", *fast], work, env)
    assert "the first wave: no runs yet" in nxt and "plan: " in nxt
    grid_dry = _run([str(b / "batchlaw"), "submit", "batch-sweep-180m-4b", "--time", "04:00:00", "--dry-run"], work, env)
    assert "plan: " in grid_dry


def test_user_config_path(installed):
    b, work, env = installed["bin"], installed["work"], installed["env"]
    mine = work / "my-configs" / "models"
    mine.mkdir(parents=True)
    (mine / "my-70m.toml").write_text('[model]\nname = "my-70m"\nlayers = 6\nhidden = 512\nheads = 8\n')
    listed = _run([str(b / "batchlaw"), "--config-dir", str(work / "my-configs"), "simulate", "--models"], work, env)
    assert "my-70m" in listed and "gpt-180m" in listed
    listed = _run([str(b / "batchlaw"), "simulate", "--models"], work,
                  {**env, "BATCHLAW_CONFIG_PATH": str(work / "my-configs")})
    assert "my-70m" in listed


def _documented_fit_examples() -> list[list[str]]:
    """The ``batchlaw fit`` examples of docs/laws.md, split as a shell would (continuation lines joined)."""
    text = (REPO / "docs" / "laws.md").read_text().replace("\\\n", " ")
    return [shlex.split(line) for line in re.findall(r"^batchlaw fit \S+ --data data/.*$", text, flags=re.M)]


def test_the_public_data_and_the_documented_fit_examples(installed):
    """The documented fit examples read data/...: from a wheel outside the checkout that folder is not there, and
    the wheel held no data, so every one failed. Now the data sets ship (with their PROVENANCE) and --data finds
    them by that name. The examples run as written, except that bootstrap counts are capped at 50 (speed)."""
    b, work, env = installed["bin"], installed["work"], installed["env"]
    listed = _run([str(installed["py"]), "-c", "from batchlaw.simulator import resources as r; print(r.data_root());"
                   "print(*r.data_names())"], work, env).split()
    assert str(REPO) not in listed[0] and listed[0].endswith("batchlaw/data")
    assert listed[1:] == sorted(p.relative_to(REPO / "data").as_posix() for p in (REPO / "data").glob("*/*.csv"))
    shipped = Path(listed[0])
    assert (shipped / "PROVENANCE.md").is_file() and (shipped / "throughput" / "PROVENANCE.md").is_file()
    examples = _documented_fit_examples()
    assert [cmd[2] for cmd in examples] == ["loss", "batch", "critical-batch"]
    for cmd in examples:
        cmd = [str(b / "batchlaw"), *cmd[1:]]
        if "--bootstrap" in cmd:
            i = cmd.index("--bootstrap") + 1
            cmd[i] = str(min(int(cmd[i]), 50))
        out = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, f"{cmd}:\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}"
        assert "success=True" in out.stdout and "read from the copy shipped with batchlaw" in out.stderr
