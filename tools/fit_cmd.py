"""``batchlaw fit loss|batch|critical-batch``: fit laws to a CSV file with configurable column names.

    batchlaw fit loss --data FILE.csv --n-col COL (--d-col COL | --c-col COL) --loss-col COL
                      [--bootstrap K] [--drop-highest K] [--heldout Q] [--json]
    batchlaw fit batch --data FILE.csv --n-col COL --d-col COL --batch-col COL [--lr-col COL]
                       --loss-col COL [--batch-unit TOKENS] [--method near-optimal|parabola] ...
    batchlaw fit critical-batch --data FILE.csv --n-col COL --batch-col COL --steps-col COL
                                [--definition mccandlish|zhang --b-ref B] ...

With ``--c-col``, D = C / (6 N) as Epoch AI did. ``--json`` prints one JSON object: one entry per
fitted law, each with params, ci, success, message, n_points. ``--data`` is a CSV file, or one of the public
data sets shipped with batchlaw by its name under ``data/`` (``data/steplaw/dense_lr_bs_loss.csv``; the
file in the working folder wins; docs/laws.md lists them).
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the three fit subcommands."""
    sub = parser.add_subparsers(dest="law", required=True, metavar="{loss,batch,critical-batch}")
    p = sub.add_parser("loss", help="Chinchilla L(N, D): Huber on log L, 4,500 starts (Besiroglu et al. 2024)")
    p.add_argument("--n-col", required=True, help="column of parameters N")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--d-col", help="column of training tokens D")
    g.add_argument("--c-col", help="column of training compute C; D = C / (6 N) as Epoch AI did")
    p.add_argument("--loss-col", required=True, help="column of final losses")
    p.add_argument("--drop-highest", type=int, default=0, help="drop the K highest-loss points (Epoch drops 5)")
    p.add_argument("--heldout", type=float, default=0.0, metavar="Q",
                   help="also fit on runs with N <= the Q-quantile of N and report the error on the rest")
    b = sub.add_parser("batch", help="optimal batch (and lr) laws from sweeps (Step Law recipe)")
    b.add_argument("--n-col", required=True, help="column of parameters N")
    b.add_argument("--d-col", required=True, help="column of training tokens D")
    b.add_argument("--batch-col", required=True, help="column of global batch sizes")
    b.add_argument("--lr-col", help="column of peak learning rates (fits lr_opt too)")
    b.add_argument("--loss-col", required=True, help="column of final losses")
    b.add_argument("--batch-unit", type=float, default=1.0, help="tokens per batch-column unit (e.g. 2048)")
    b.add_argument("--method", choices=["near-optimal", "parabola"], default="near-optimal",
                   help="B_opt per (N, D) cell: mean of the near-optimal runs (Step Law) or a parabola vertex")
    b.add_argument("--tolerance", type=float, default=0.0025, help="near-optimal band (0.25%% in Step Law)")
    b.add_argument("--batch-vars", default="D", help="inputs of B_opt among N, D, C, comma-separated")
    b.add_argument("--lr-vars", default="N,D", help="inputs of lr_opt among N, D, C, comma-separated")
    b.add_argument("--estimate", choices=["ols", "bootstrap-mean"], default="ols",
                   help="the law: least squares on all points, or the mean of bootstrap refits (as Step Law)")
    b.add_argument("--resample", choices=["rows", "cells"], default="rows",
                   help="bootstrap unit: single runs, or whole (N, D) cells")
    c = sub.add_parser("critical-batch", help="S(B) = S_min (1 + B_noise / B) per model, then B_crit(N)")
    c.add_argument("--n-col", required=True, help="column of model sizes")
    c.add_argument("--batch-col", required=True, help="column of batch sizes")
    c.add_argument("--steps-col", required=True, help="column of steps to the target loss")
    c.add_argument("--definition", choices=["mccandlish", "zhang"], default="mccandlish",
                   help="B_crit = B_noise, or Zhang et al.'s 20%% overhead over linear scaling from --b-ref")
    c.add_argument("--b-ref", type=float, help="reference batch of --definition zhang (they use 256 sequences)")
    c.add_argument("--overhead", type=float, default=0.2, help="overhead of --definition zhang")
    for q in (p, b, c):
        q.add_argument("--data", required=True, help="CSV file with a header row, or a shipped data set"
                       " (data/steplaw/dense_lr_bs_loss.csv, ...)")
        q.add_argument("--bootstrap", type=int, default=0, help="bootstrap refits for intervals (0 = none)")
        q.add_argument("--seed", type=int, default=0, help="seed of the bootstrap")
        q.add_argument("--json", action="store_true", help="print one JSON object")


def _columns(args, table, *names) -> list[np.ndarray | None]:
    out = []
    for name in names:
        col = getattr(args, name)
        if col is None:
            out.append(None)
            continue
        flag = "--" + name.replace("_", "-")
        if col not in table:
            raise ValueError(f"{flag} {col!r}: no such column; the file has {', '.join(table)}")
        values = np.asarray(table[col])
        if values.dtype == object:
            raise ValueError(f"{flag} {col!r}: the column is not numeric")
        out.append(values.astype(float))
    return out


def _check(args) -> None:
    if args.bootstrap < 0:
        raise ValueError(f"--bootstrap {args.bootstrap}: must be >= 0")
    if args.law == "loss" and (args.drop_highest < 0 or not 0.0 <= args.heldout < 1.0):
        raise ValueError(f"--drop-highest {args.drop_highest} / --heldout {args.heldout}: need K >= 0 and 0 <= Q < 1")
    if args.law == "batch" and args.batch_unit <= 0:
        raise ValueError(f"--batch-unit {args.batch_unit}: must be > 0")
    if args.law == "critical-batch" and args.definition == "zhang" and not (args.b_ref or 0) > 0:
        raise ValueError("--b-ref: --definition zhang needs a positive reference batch (Zhang et al.: 256)")


def _fit_loss(args, t) -> dict:
    from batchlaw.simulator import fits

    n, d, c, loss = _columns(args, t, "n_col", "d_col", "c_col", "loss_col")
    d = d if d is not None else c / (6.0 * n)
    if args.drop_highest:
        if args.drop_highest > len(loss) - 6:
            raise ValueError(f"--drop-highest {args.drop_highest}: leaves fewer than 6 of {len(loss)} points")
        keep = np.argsort(np.where(np.isnan(loss), np.inf, loss))[: len(loss) - args.drop_highest]
        n, d, loss = n[keep], d[keep], loss[keep]
    out = {"loss": fits.fit_loss(n, d, loss, bootstrap=args.bootstrap, seed=args.seed).to_dict()}
    if args.heldout:
        out["loss_heldout"] = fits.fit_loss_heldout(n, d, loss, quantile=args.heldout).to_dict()
    return out


def _fit_batch(args, t) -> dict:
    from batchlaw.simulator import fits

    n, d, bs, lr, loss = _columns(args, t, "n_col", "d_col", "batch_col", "lr_col", "loss_col")
    res = fits.fit_optimal_batch(n, d, bs * args.batch_unit, loss, lr=lr, method=args.method,
                                 tolerance=args.tolerance, batch_vars=_vars(args.batch_vars),
                                 lr_vars=_vars(args.lr_vars), bootstrap=args.bootstrap, resample=args.resample,
                                 estimate=args.estimate, seed=args.seed)
    return {f"{k}_opt": v.to_dict() for k, v in res.items()}


def _vars(text: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in text.split(",") if v.strip())


def _fit_critical(args, t) -> dict:
    from batchlaw.simulator import fits

    n, bs, steps = _columns(args, t, "n_col", "batch_col", "steps_col")
    res = fits.fit_critical_batch_law(n, bs, steps, definition=args.definition, b_ref=args.b_ref,
                                      overhead=args.overhead, bootstrap=args.bootstrap, seed=args.seed)
    out = {f"N={size:.6g}": r.to_dict() for size, r in res["per_size"].items()}
    if res["law"] is not None:
        out["B_crit(N)"] = res["law"].to_dict()
    return out


def _print(result: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(result, sort_keys=True))
        return
    for law, r in result.items():
        level = round(100 * r.get("ci_level", 0.8))
        print(f"{law}: n_points={r['n_points']} success={r['success']}" + (f" ({r['message']})" if r["message"] else ""))
        for k, v in r["params"].items():
            lo, hi = r["ci"].get(k, (None, None))
            print(f"  {k:>8s} = {v:.6g}" + (f"   {level}% CI [{lo:.4g}, {hi:.4g}]" if lo is not None else ""))
        held = r.get("extra", {}).get("heldout")
        if held:
            print(f"  held out {held['n_heldout']} runs with N > {held['n_threshold']:.4g}: mean |rel. error| "
                  f"{held['mean_abs_rel_error']:.2%}, max {held['max_abs_rel_error']:.2%}")


def run(args: argparse.Namespace) -> int:
    """Read the CSV, fit the chosen law, print a table or one JSON object."""
    import warnings

    from batchlaw.simulator.csvio import read_csv
    from batchlaw.simulator.resources import data_file

    _check(args)
    path = data_file(args.data)
    if str(path) != str(args.data):  # not in the working folder (a wheel outside the checkout): the shipped copy
        print(f"note: --data {args.data}: read from the copy shipped with batchlaw ({path})", file=sys.stderr)
    table = read_csv(path)
    _note_dropped(args, table)
    fit = {"loss": _fit_loss, "batch": _fit_batch, "critical-batch": _fit_critical}[args.law]
    with warnings.catch_warnings(record=True) as caught:  # one line each on stderr, not Python's two
        warnings.simplefilter("always")
        result = fit(args, table)
    for w in caught:
        print(f"warning: {w.category.__name__}: {w.message}", file=sys.stderr)
    _print(result, args.json)
    if not args.json and not args.bootstrap:
        print("(no intervals: --bootstrap 0; add e.g. --bootstrap 200 for 80% intervals)")
    return 0


_USED = ("n_col", "d_col", "c_col", "batch_col", "lr_col", "loss_col", "steps_col")


def _note_dropped(args, table) -> None:
    """Say on stderr which rows the fit leaves out (a missing, non-finite or non-positive value)."""
    cols = [(getattr(args, a), a) for a in _USED if getattr(args, a, None) and getattr(args, a) in table]
    bad_rows: dict[int, str] = {}
    for col, _ in cols:
        values = np.asarray(table[col])
        if values.dtype == object:
            continue  # refused with its own message by _columns
        v = values.astype(float)
        for i in np.flatnonzero(~(np.isfinite(v) & (v > 0))):
            bad_rows.setdefault(int(i), f"{col} = {v[i]:g}")
    if bad_rows:
        first = min(bad_rows)
        print(f"note: {len(bad_rows)} of {len(next(iter(table.values())))} rows left out (a missing, non-finite or"
              f" non-positive value; first: row {first}, {bad_rows[first]})", file=sys.stderr)
