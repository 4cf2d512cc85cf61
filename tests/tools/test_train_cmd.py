"""Tier (a), pure: `batchlaw train` builds the rank command and validates before launching."""

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
