"""Tier (d), SLURM files without a cluster: render the sbatch script, `bash -n` it, diff it against a
hand-reviewed golden file; submit's validation, quoting and all-or-nothing writes."""

import subprocess
import tomllib
from pathlib import Path

import pytest

from batchlaw.tools.cli import main
from batchlaw.tools.submit import SubmitSettings, render_sbatch

GOLDEN = Path(__file__).parent / "golden" / "train-2n.sbatch"
REPO = Path(__file__).resolve().parents[2]
BASE = REPO / "configs" / "runs" / "tiny-cpu.toml"


def _settings(tmp_path, **kw):
    return SubmitSettings(runs_dir=Path("/scratch/runs"), base_config=BASE, time="04:00:00", partition="gpu",
                          gpus_per_node=8, **kw)


def test_rendered_script_matches_golden_and_parses(tmp_path):
    text = render_sbatch(_settings(tmp_path), nodes=2)
    assert text == GOLDEN.read_text()
    f = tmp_path / "s.sbatch"
    f.write_text(text)
    subprocess.run(["bash", "-n", str(f)], check=True)
    assert "#SBATCH --nodes=2" in text and "--nnodes=\"$NNODES\"" in text and "scontrol requeue \"$TASK\"" in text  # node count from SLURM in torchrun


@pytest.mark.parametrize("field,value,message", [
    ("time", "", "--time = '': required"),
    ("partition", "gpu; rm -rf ~", "--partition = 'gpu; rm -rf ~': allowed are"),
])
def test_unset_or_unsafe_settings_are_refused(tmp_path, field, value, message):
    s = _settings(tmp_path)
    s = SubmitSettings(**{**s.__dict__, field: value})
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        render_sbatch(s, nodes=1)


def _grid(tmp_path, rows):
    f = tmp_path / "grid.csv"
    f.write_text("model,global_batch,tp,pp,nodes,survives\n" + "\n".join(rows) + "\n")
    return f


def test_config_strings_are_data_not_code(tmp_path, capsys):
    evil = 'x"; touch PWNED; "'
    runs = tmp_path / "runs"
    args = ["submit", str(_grid(tmp_path, ["tiny,8,1,1,1,true"])), "--base-config", str(BASE), "--runs-dir",
            str(runs), "--time", "00:05:00", "--nproc-per-node", "1", "--set", f"log.tensorboard={evil}"]
    assert main(args + ["--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "would submit: 1 runs" in out and "#!/usr/bin/env bash" in out
    assert not runs.exists()  # a dry run writes nothing
    s = SubmitSettings(runs_dir=runs, base_config=BASE, time="00:05:00", nproc_per_node=1,
                       overrides=(f"log.tensorboard={evil}",))
    from batchlaw.simulator.csvio import read_csv
    from batchlaw.tools.submit import plan_runs, write_runs

    plan = plan_runs(read_csv(tmp_path / "grid.csv"), s)
    write_runs(plan, s, 1, render_sbatch(s, 1))
    run_toml = next(runs.glob("*/run.toml"))
    assert tomllib.loads(run_toml.read_text())["log"]["tensorboard"] == evil
    script = (runs / "train-1n.sbatch").read_text()
    assert "PWNED" not in script  # settings never enter the script
    # the list file holds paths only; run the script's reading of it in bash: nothing executes
    listing = (runs / "runs-1n.txt").read_text()
    out = subprocess.run(["bash", "-c", 'd=$(sed -n "1p" "$0"); echo "$d"', str(runs / "runs-1n.txt")],
                         cwd=tmp_path, capture_output=True, text=True, check=True)
    assert out.stdout == listing and not (tmp_path / "PWNED").exists()


def test_invalid_row_writes_nothing(tmp_path, capsys):
    runs = tmp_path / "runs"
    grid = _grid(tmp_path, ["tiny,8,1,1,1,true", "tiny,7,1,1,1,true"])  # the second row cannot run
    assert main(["submit", str(grid), "--base-config", str(BASE), "--runs-dir", str(runs), "--time", "00:05:00",
                 "--nproc-per-node", "1", "--dry-run"]) == 2
    assert "global batch 7 not divisible by micro_batch x dp = 2" in capsys.readouterr().err
    assert not runs.exists()
