"""``batchlaw inspect FILE.h5``: attributes, columns, rows, last step and status of a run log.

Works on a run still being written (the log is opened lock-free, in SWMR mode when the writer is
SWMR; see ``tools/logs.open_log``). Every error names the file and is one line (exit status 2).
"""

from __future__ import annotations

import argparse
import json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", help="HDF5 run log (may be a live run)")


def _attr_text(v) -> str:
    if isinstance(v, bytes):
        v = v.decode("utf-8", "replace")
    if isinstance(v, str) and v.startswith("{"):
        try:
            return json.dumps(json.loads(v))[:200]
        except json.JSONDecodeError:
            return v[:200] + " (not valid JSON)"
    return str(v)[:200]


def run(args: argparse.Namespace) -> int:
    import h5py

    from batchlaw.plugin import logschema as S
    from batchlaw.tools.logs import LogError, first_line, steps_group, open_log

    path = args.path
    try:
        with open_log(path) as f:
            steps = steps_group(f, path)
            for k, v in f.attrs.items():
                print(f"{k}: {_attr_text(v)}")
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
