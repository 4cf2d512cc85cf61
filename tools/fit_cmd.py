"""``batchlaw fit loss|batch|critical-batch``: fit laws to a CSV with configurable column names."""

from __future__ import annotations

import argparse
import json

import numpy as np


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="law", required=True)
    p = sub.add_parser("loss", help="Chinchilla L(N, D) (Huber on log L, 4,500 starts)")
    p.add_argument("--n-col", required=True)
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--d-col")
    g.add_argument("--c-col", help="compute column; D = C / (6 N) as Epoch AI did")
    p.add_argument("--loss-col", required=True)
    p.add_argument("--drop-highest", type=int, default=0, help="drop the K highest-loss points (Epoch drops 5)")
    b = sub.add_parser("batch", help="optimal batch (and lr) laws from sweeps (Step Law recipe)")
    b.add_argument("--n-col", required=True)
    b.add_argument("--d-col", required=True)
    b.add_argument("--batch-col", required=True)
    b.add_argument("--lr-col")
    b.add_argument("--loss-col", required=True)
    b.add_argument("--batch-unit", type=float, default=1.0, help="tokens per batch-column unit (e.g. 2048)")
    b.add_argument("--tolerance", type=float, default=0.0025, help="near-optimal band (0.25%% in Step Law)")
    c = sub.add_parser("critical-batch", help="S(B) = S_min (1 + B_crit / B) per model, then B_crit(N)")
    c.add_argument("--n-col", required=True)
    c.add_argument("--batch-col", required=True)
    c.add_argument("--steps-col", required=True)
    for q in (p, b, c):
        q.add_argument("--data", required=True, help="CSV file")
        q.add_argument("--bootstrap", type=int, default=0, help="bootstrap refits for intervals")
        q.add_argument("--json", action="store_true", help="print one JSON object")


def _cols(args, table, *names):
    out = []
    for name in names:
        col = getattr(args, name)
        if col is None:
            out.append(None)
            continue
        if col not in table:
            raise ValueError(f"--{name.replace('_', '-')} {col!r}: no such column; the file has "
                             + ", ".join(table))
        values = np.asarray(table[col])
        if values.dtype == object:
            raise ValueError(f"--{name.replace('_', '-')} {col!r}: the column is not numeric")
        out.append(values.astype(float))
    return out


def _print(result: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(result, sort_keys=True))
        return
    for law, r in result.items():
        print(f"{law}: n_points={r.get('n_points')} success={r.get('success')}")
        for k, v in r["params"].items():
            lo, hi = r.get("ci", {}).get(k, (None, None))
            print(f"  {k:>8s} = {v:.6g}" + (f"   80% CI [{lo:.4g}, {hi:.4g}]" if lo is not None else ""))


def run(args: argparse.Namespace) -> int:
    from batchlaw.simulator import fits
    from batchlaw.simulator.csvio import read_csv

    t = read_csv(args.data)
    if args.law == "loss":
        n, d, c, loss = _cols(args, t, "n_col", "d_col", "c_col", "loss_col")
        d = d if d is not None else c / (6 * n)
        if args.drop_highest:
            keep = np.argsort(loss)[: len(loss) - args.drop_highest]
            n, d, loss = n[keep], d[keep], loss[keep]
        res = {"loss": fits.fit_loss(n, d, loss, bootstrap=args.bootstrap).to_dict()}
    elif args.law == "batch":
        n, d, bs, lr, loss = _cols(args, t, "n_col", "d_col", "batch_col", "lr_col", "loss_col")
        out = fits.fit_optimal_batch(n, d, bs * args.batch_unit, loss, lr=lr, tolerance=args.tolerance,
                                     bootstrap=args.bootstrap)
        res = {k: v.to_dict() for k, v in out.items()}
    else:
        n, bs, steps = _cols(args, t, "n_col", "batch_col", "steps_col")
        res = {}
        crit = []
        for size in np.unique(n):
            sel = n == size
            r = fits.fit_critical_batch(bs[sel], steps[sel], bootstrap=args.bootstrap)
            res[f"N={size:.4g}"] = r.to_dict()
            crit.append((size, r.params["B_crit"]))
        if len(crit) >= 3:
            sizes, bc = np.array(crit).T
            res["B_crit(N)"] = fits.fit_power_law([sizes], bc, names=["N"], bootstrap=args.bootstrap or 0).to_dict()
    _print(res, args.json)
    return 0
