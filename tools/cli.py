"""The ``batchlaw`` console script: one command, subcommands imported lazily.

Each subcommand lives in its own module exposing ``add_arguments(parser)`` and ``run(args) -> int``;
only the chosen one is imported, so ``batchlaw fit`` never loads torch (calculon ``bin/calculon``).
Project errors (``ValueError``, ``ImportError`` for a missing extra, ``FileNotFoundError``) are
caught here, printed as one line, and turned into exit status 2.

Vocabulary shared by every subcommand: ``--out`` is a file, ``--out-dir`` a folder,
``--nproc-per-node`` the ranks per node, ``--set KEY=VALUE`` a config override, ``--system`` a system
profile. ``--config-dir DIR`` (before the subcommand) adds a folder of user configs (``models/``,
``systems/``, ``grids/``, ``laws/``, ``runs/``) in front of ``$BATCHLAW_CONFIG_PATH`` and the shipped ones.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

# name -> (module, one-line help)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "simulate": ("batchlaw.tools.simulate_cmd", "predict step time, memory and GPU-hours; expand, prune and plan a grid"),
    "fit": ("batchlaw.tools.fit_cmd", "fit loss, optimal-batch and critical-batch laws to data"),
    "train": ("batchlaw.tools.train_cmd", "train a run locally (starts and owns the ranks of python -m batchlaw.plugin.train)"),
    "data": ("batchlaw.tools.data_cmd", "build Megatron indexed datasets (.bin/.idx) from text files"),
    "submit": ("batchlaw.tools.submit_cmd", "launch exactly the plan simulate printed: run directories and sbatch job arrays"),
    "inspect": ("batchlaw.tools.inspect_cmd", "print the attributes and columns of an HDF5 run log"),
    "analyze": ("batchlaw.tools.analyze_cmd", "summarise run logs, fit batch laws, write a report"),
    "calibrate": ("batchlaw.tools.calibrate_cmd", "fit a system profile from measured step times in logs"),
    "probe-cbs": ("batchlaw.tools.probe_cmd", "measure the critical batch by branched training from checkpoints"),
    "design": ("batchlaw.tools.design_cmd", "plan a study against a precision target: runs, LRs, seeds, nodes; --next for the next wave"),
    "demo": ("batchlaw.tools.demo_cmd", "the whole loop on CPU: simulate, prune, train, analyse, fit, calibrate"),
}


class _Retired(argparse.Action):
    """A retired spelling: using it is a one-line error naming the flag that replaced it."""

    def __init__(self, option_strings, dest, *, use: str, **kwargs):
        super().__init__(option_strings, dest=argparse.SUPPRESS, nargs="?", help=argparse.SUPPRESS)
        self.use = use

    def __call__(self, parser, namespace, values, option_string=None):
        raise ValueError(f"{option_string} was retired; use {self.use}")


def retire(parser: argparse.ArgumentParser, old: str, use: str) -> None:
    """Make ``old`` a one-line error that names ``use`` (declared, so that argparse does not take it as an
    abbreviation of a longer flag: ``--nproc`` would otherwise still mean ``--nproc-per-node``)."""
    parser.add_argument(old, action=_Retired, use=use)


def _global_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--config-dir", action="append", default=[], metavar="DIR",
                        help="folder of user configs searched before $BATCHLAW_CONFIG_PATH and the shipped ones"
                             " (repeatable)")


def _parser(argv: list[str]) -> tuple[argparse.ArgumentParser, object | None]:
    parser = argparse.ArgumentParser(prog="batchlaw", description=__doc__.splitlines()[0])
    _global_options(parser)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    pre = argparse.ArgumentParser(add_help=False)
    _global_options(pre)
    rest = pre.parse_known_args(argv)[1]
    chosen = next((a for a in rest if not a.startswith("-")), None)
    module = None
    for name, (modname, help_) in SUBCOMMANDS.items():
        if name == chosen:
            module = importlib.import_module(modname)
            doc = (module.__doc__ or help_).strip()
            p = sub.add_parser(name, help=help_, description=doc,
                               formatter_class=argparse.RawDescriptionHelpFormatter)
            module.add_arguments(p)
        else:
            sub.add_parser(name, help=help_, description=help_)
    return parser, module


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script; returns the process exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        parser, module = _parser(argv)
        args = parser.parse_args(argv)
        logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                            format="%(levelname)s %(name)s: %(message)s")
        if args.config_dir:
            path = os.pathsep.join([str(os.path.abspath(d)) for d in args.config_dir]
                                   + [p for p in os.environ.get("BATCHLAW_CONFIG_PATH", "").split(os.pathsep) if p])
            os.environ["BATCHLAW_CONFIG_PATH"] = path  # also seen by subprocesses (demo's trainers)
        if module is None:
            parser.print_help()
            return 2
        return int(module.run(args) or 0)
    except (ValueError, ImportError, FileNotFoundError) as exc:
        print(f"batchlaw: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `batchlaw simulate --models | head`: the reader left; no traceback
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # Python's flush at exit would raise again
        return 141  # 128 + SIGPIPE, as a shell reports a pipe writer it killed


if __name__ == "__main__":
    sys.exit(main())
