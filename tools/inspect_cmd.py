"""``batchlaw inspect FILE.h5``: attributes, columns, rows, last step and status of a run log.

Attributes are printed in full; a JSON object (the resolved ``config``, ``layout``, ``versions``) one leaf
per line, as ``config.train.lr = 0.0003``, so the config can be read (and grepped) without a cut.

Works on a run still being written (the log is opened lock-free, in SWMR mode when the writer is
SWMR; see ``tools/logs.open_log``). Every error names the file and is one line (exit status 2).
"""

from __future__ import annotations

import argparse
import json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", help="HDF5 run log (may be a live run)")


def _flat(value, prefix: str) -> list[str]:
    """``prefix.key = value`` lines of a JSON object, nested keys joined by dots, values as JSON (never cut)."""
    if isinstance(value, dict) and value:
        return [line for k, v in value.items() for line in _flat(v, f"{prefix}.{k}")]
    return [f"{prefix} = {json.dumps(value)}"]


def _attr_lines(name: str, v) -> list[str]:
    """An attribute in full: a JSON object one leaf per line (``config.train.lr = 0.0003``), anything else on
    its own line. Nothing is cut: the config was cut at 200 characters, in the middle of a word."""
    if isinstance(v, bytes):
        v = v.decode("utf-8", "replace")
    if isinstance(v, str) and v.startswith(("{", "[")):
        try:
            parsed = json.loads(v)
        except json.JSONDecodeError:
            return [f"{name}: {v} (not valid JSON)"]
        return _flat(parsed, name) if isinstance(parsed, dict) else [f"{name}: {json.dumps(parsed)}"]
    return [f"{name}: {v}"]


def run(args: argparse.Namespace) -> int:
    import h5py

    from batchlaw.plugin import logschema as S
    from batchlaw.tools.logs import LogError, first_line, steps_group, open_log

    path = args.path
    try:
        with open_log(path) as f:
            steps = steps_group(f, path)
            for k, v in f.attrs.items():
                print("\n".join(_attr_lines(k, v)))
            n = min([steps[k].shape[0] for k in steps if isinstance(steps[k], h5py.Dataset)] or [0])
            live = " (live: SWMR)" if f.swmr_mode and f.attrs.get("status", "") == "running" else ""
            print(f"rows: {n}" + (f", steps {int(steps['step'][0])}..{int(steps['step'][n - 1])}" if n else "") + live)
            print("columns: " + ", ".join(sorted(steps)))
            events = f.get(S.EVENTS_GROUP)
            for g in events if isinstance(events, h5py.Group) else ():
                grp = events[g]
                rows = grp["step"].shape[0] if isinstance(grp, h5py.Group) and "step" in grp else 0
                print(f"events/{g}: {rows} rows")
    except (LogError, BrokenPipeError):  # a closed pipe is the reader's doing, not the log's (the CLI ends quietly)
        raise
    except (OSError, KeyError, ValueError, TypeError, RuntimeError, IndexError, OverflowError) as exc:
        raise LogError(f"{path}: not a readable batchlaw run log ({first_line(exc)})") from None
    return 0
