"""Tier (a), pure: one vocabulary on the command line: every subcommand has a description, every
option has help text, the same idea has the same flag, and the old spellings (--nproc, --out for a folder)
are retired: a one-line error naming the new flag, never a silent alias or an abbreviation."""

import argparse
import importlib

import pytest

from batchlaw.tools.cli import SUBCOMMANDS, main


def _parsers(name):
    parser = argparse.ArgumentParser(prog=f"batchlaw {name}")
    importlib.import_module(SUBCOMMANDS[name][0]).add_arguments(parser)
    todo, out = [parser], []
    while todo:
        p = todo.pop()
        out.append(p)
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                todo.extend(action.choices.values())
    return out


@pytest.mark.parametrize("name", sorted(SUBCOMMANDS))
def test_every_option_has_help_and_every_command_a_description(name):
    assert importlib.import_module(SUBCOMMANDS[name][0]).__doc__.strip()
    for p in _parsers(name):
        for action in p._actions:
            if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
                continue
            assert action.help, f"batchlaw {name}: {action.option_strings or action.dest} has no help text"


@pytest.mark.parametrize("name,flag", [("train", "--nproc-per-node"), ("submit", "--nproc-per-node"),
                                       ("analyze", "--out-dir"), ("demo", "--out-dir")])
def test_shared_flags(name, flag):
    flags = {s for p in _parsers(name) for a in p._actions for s in a.option_strings
             if a.help != argparse.SUPPRESS}
    assert flag in flags
    assert not flags & {"--nproc"}  # retired spellings are not offered


@pytest.mark.parametrize("argv,new", [
    (["train", "tiny-cpu", "--nproc", "2", "--print-command"], "--nproc-per-node"),
    (["train", "tiny-cpu", "--nproc=2", "--print-command"], "--nproc-per-node"),
    (["submit", "batch-sweep-180m-4b", "--time", "01:00:00", "--dry-run", "--nproc", "2"], "--nproc-per-node"),
    (["analyze", "logs", "--out", "report"], "--out-dir"),
    (["demo", "--out", "demo-out"], "--out-dir"),
    (["probe-cbs", "runs/x", "--out", "probe"], "--out-dir"),
    (["probe-cbs", "runs/x", "--nproc", "2"], "--nproc-per-node"),
])
def test_old_spellings_are_retired_with_a_one_line_error(tmp_path, monkeypatch, capsys, argv, new):
    """README said "the old spellings --nproc and --out for folders still work": hidden aliases. Declared retired,
    they also cannot pass as abbreviations of the new flags (argparse would take --nproc for --nproc-per-node)."""
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1 and "was retired; use " + new in captured.err, captured.err
    assert not captured.out and not list(tmp_path.iterdir())  # refused before anything ran


@pytest.mark.parametrize("argv,listed", [
    (["simulate", "no-such-grid"], "shipped grids are batch-sweep-180m-4b"),
    (["simulate", "--runs", "x.csv", "--system", "no-such-gpu"], "shipped profiles are"),
    (["train", "no-such-run", "--print-command"], "shipped run configs are"),
    (["train", "tiny-cpu", "--set", "model.name=gpt-13b", "--print-command"], "shipped models are"),
])
def test_unknown_names_list_the_valid_ones(tmp_path, monkeypatch, capsys, argv, listed):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "x.csv").write_text("layers,hidden,heads,seq_len,vocab,tp,pp,global_batch,gpus\n2,64,4,64,100,1,1,8,1\n")
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert listed in err and err.count("\n") == 1


def test_a_closed_pipe_ends_quietly():
    """Session-5 audit: `batchlaw simulate --models | head -1` printed a BrokenPipeError traceback."""
    import subprocess
    import sys

    p = subprocess.Popen([sys.executable, "-m", "batchlaw.tools", "simulate", "--models"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, bufsize=0)
    p.stdout.close()  # the reader is gone before the first line
    err = p.stderr.read().decode()
    assert p.wait(timeout=60) == 141 and "Traceback" not in err and "BrokenPipe" not in err, err
