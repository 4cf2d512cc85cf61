"""``batchlaw inspect FILE.h5``: attributes, columns, rows, last step and status of a run log."""

from __future__ import annotations

import argparse
import json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", help="HDF5 run log")


def run(args: argparse.Namespace) -> int:
    import h5py

    from batchlaw.plugin import logschema as S

    try:
        f = h5py.File(args.path, "r")
    except OSError as exc:
        raise ValueError(f"{args.path!r}: not a readable HDF5 file ({exc})") from None
    with f:
        S.check_version(f.attrs.get("schema_version", 0))
        for k, v in f.attrs.items():
            text = v if not isinstance(v, str) or not v.startswith("{") else json.dumps(json.loads(v))
            print(f"{k}: {str(text)[:200]}")
        steps = f[S.STEPS_GROUP]
        n = steps["step"].shape[0] if "step" in steps else 0
        print(f"rows: {n}" + (f", steps {int(steps['step'][0])}..{int(steps['step'][-1])}" if n else ""))
        print("columns: " + ", ".join(sorted(steps)))
        for g in f[S.EVENTS_GROUP]:
            print(f"events/{g}: {f[S.EVENTS_GROUP][g]['step'].shape[0]} rows")
    return 0
