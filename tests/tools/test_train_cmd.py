"""Tier (a), pure: `batchlaw train` builds the rank command, validates before launching and names its log."""

from batchlaw.tools.cli import main


def test_print_command_and_validation(capsys):
    assert main(["train", "configs/runs/tiny-cpu.toml", "--nproc-per-node", "2", "--set", "parallel.tp=2", "--print-command"]) == 0
    out = capsys.readouterr().out
    assert "2 x RANK=<0..1> WORLD_SIZE=2 " in out and " -m batchlaw.plugin.train configs/runs/tiny-cpu.toml" in out
    assert "--set parallel.tp=2" in out
    # the log's config says where the run executed: one node of 2 ranks (tiny-cpu says nothing: 8 x 1)
    assert "--set system.gpus_per_node=2 --set system.nodes=1" in out
    assert main(["train", "configs/runs/tiny-cpu.toml", "--nproc-per-node", "3", "--print-command"]) == 2
    assert "global batch 8 not divisible by micro_batch x dp = 6" in capsys.readouterr().err


def test_train_says_where_it_writes_its_log(tmp_path, monkeypatch, capsys):
    """`batchlaw train` never said where the HDF5 log went (a relative log.path, resolved by the ranks). It now
    prints the absolute path when it starts and again when the ranks are done. The ranks are stood in for by one
    process that creates the log (the real ranks are run by tests/plugin/test_launcher.py and the wheel tier)."""
    import subprocess
    import sys

    from batchlaw.tools import train_cmd

    monkeypatch.chdir(tmp_path)
    log = tmp_path / "runs" / "tiny" / "log.h5"
    fake = [sys.executable, "-c", f"import os; os.makedirs({str(log.parent)!r}); open({str(log)!r}, 'w').close()"]
    monkeypatch.setattr(train_cmd, "_start", lambda cmd, nproc, *rendezvous: [subprocess.Popen(fake)])
    assert main(["train", "tiny-cpu", "--set", "log.path=runs/tiny/log.h5", "--set", "checkpoint.dir="]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"batchlaw train: HDF5 log -> {log}"
    assert lines[-1] == f"batchlaw train: HDF5 log written: {log}"
