"""The ``batchlaw`` console script: one command, subcommands imported lazily.

Each subcommand lives in its own module exposing ``add_arguments(parser)`` and ``run(args) -> int``;
only the chosen one is imported, so ``batchlaw fit`` never loads torch (calculon ``bin/calculon``).
Project errors (``ValueError``, ``ImportError`` for a missing extra, ``FileNotFoundError``) are
caught here, printed as one line, and turned into exit status 2.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

# name -> (module, one-line help)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "simulate": ("batchlaw.tools.simulate_cmd", "predict step time, memory and GPU-hours; expand and prune a grid"),
    "fit": ("batchlaw.tools.fit_cmd", "fit loss, optimal-batch and critical-batch laws to data"),
    "train": ("batchlaw.tools.train_cmd", "train a run locally (wraps torchrun -m batchlaw.plugin.train)"),
    "data": ("batchlaw.tools.data_cmd", "build Megatron indexed datasets (.bin/.idx) from text files"),
    "submit": ("batchlaw.tools.submit_cmd", "render and submit sbatch job arrays from a pruned grid"),
    "inspect": ("batchlaw.tools.inspect_cmd", "print the attributes and columns of an HDF5 run log"),
    "analyze": ("batchlaw.tools.analyze_cmd", "summarise run logs, fit batch laws, write a report"),
    "calibrate": ("batchlaw.tools.calibrate_cmd", "fit a system profile from measured step times in logs"),
    "probe-cbs": ("batchlaw.tools.probe_cmd", "measure the critical batch by branched training from checkpoints"),
    "demo": ("batchlaw.tools.demo_cmd", "the whole loop on CPU: simulate, prune, train, analyse, fit, calibrate"),
}


def _parser(argv: list[str]) -> tuple[argparse.ArgumentParser, object | None]:
    parser = argparse.ArgumentParser(prog="batchlaw", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    chosen = next((a for a in argv if not a.startswith("-")), None)
    module = None
    for name, (modname, help_) in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=help_, description=help_)
        if name == chosen:
            module = importlib.import_module(modname)
            module.add_arguments(p)
    return parser, module


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script; returns the process exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        parser, module = _parser(argv)
        args = parser.parse_args(argv)
        logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                            format="%(levelname)s %(name)s: %(message)s")
        if module is None:
            parser.print_help()
            return 2
        return int(module.run(args) or 0)
    except (ValueError, ImportError, FileNotFoundError) as exc:
        print(f"batchlaw: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
