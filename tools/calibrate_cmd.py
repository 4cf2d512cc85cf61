"""``batchlaw calibrate LOGDIR --system NAME``: fit a system profile to measured step times.

Each completed run log becomes one row: the RunSpec read back from its ``config`` attribute
(``runconfig.spec_from_dict``, the strict loader) as the grid's columns (``spec_to_row``), its
launched layout, and its median step time. Logs from another device class than the profile's (CPU
logs for a GPU profile) are refused unless ``--force``. The profile's efficiency parameters are
fitted on every other run (sorted by size and batch) and the error is reported on the rest, before
and after; then refitted on all runs and written as a profile TOML that ``batchlaw simulate
--system PATH`` uses. Every ``FitWarning`` of the fit is printed, then each run's step time as the
starting profile predicts it (what the plan priced), as the fitted one does, and as logged, and the
efficiency parameters that are still priors.

Plan = run for step time: each run is priced with the framework preset its log's ``kernels`` attribute
says ran (``batchlaw-te``: Transformer Engine's layer spec; ``batchlaw-local``: the local one). A log whose
plan named the other preset is refused in one line, as are logs of two presets in one folder and a
starting profile fitted on runs of another preset (``[calibration] framework``).

A log that cannot be read (truncated, corrupt, not a run log) is named on stderr in one line and
skipped. Exit status, as ``analyze``: 0 every log read; 1 (``logs.EXIT_SKIPPED``) profile written but
some logs skipped; 2 usage error, or no readable completed log at all (nothing written).
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import numpy as np


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("logdir", help="folder of HDF5 run logs (searched recursively)")
    parser.add_argument("--system", required=True, help="starting profile (name or TOML)")
    parser.add_argument("--out", help="profile TOML file to write (default: LOGDIR/<system>-calibrated.toml)")
    parser.add_argument("--params", default="matmul_max,width_half,tokens_half,overhead_s",
                        help="efficiency parameters to fit (comma separated)")
    parser.add_argument("--prior-sigma", type=float, default=3.0,
                        help="width of the prior around the starting profile (log units; default 3.0: on your own"
                             " logs the data decide and the prior only keeps unidentified parameters finite;"
                             " 0 = no prior)")
    parser.add_argument("--force", action="store_true",
                        help="accept logs from another device class than the profile's (e.g. CPU logs for a GPU)")


def rows_from_logs(runs, system: str | None = None, *, force: bool = False,
                   skipped: list[str] | None = None) -> dict[str, np.ndarray]:
    """Simulator rows (RunSpec columns + the launched layout + iter_time_s) from run summaries.

    Args:
        runs: ``tools.logs.RunSummary`` objects.
        system: the profile name; logs of another device class raise ValueError unless ``force``.
        skipped: when a list, a completed log without a launched layout or step times is named there and
            left out (the command's exit status 1); otherwise it raises ValueError.
    """
    from batchlaw.simulator.plan import spec_to_row
    from batchlaw.simulator.spec import device_class, resolve_precision

    rows, paths = [], []
    for r in runs:
        if r.status != "completed" or not r.config:
            continue
        if r.is_ramp:
            continue  # a ramp's median step ran at other batches than its last: no single layout to price
        bad = ("no launched layout (attribute 'layout' lacks world_size, tp, pp, dp, vpp or micro_batch)"
               if not {"world_size", "tp", "pp", "dp", "vpp", "micro_batch"} <= set(r.layout) else
               f"no step times (column step_time_s = {r.step_time_s})"
               if not (np.isfinite(r.step_time_s) and r.step_time_s > 0) else "")
        if bad and skipped is None:
            raise ValueError(f"calibrate: {r.path} has {bad}; move it out of LOGDIR")
        if bad:
            skipped.append(f"{r.path}: {bad}")
            continue
        spec = r.spec()
        lay = r.layout
        device = "cpu" if lay.get("device", r.config.get("_device", "cpu")) == "cpu" else "gpu"
        if system is not None and device != device_class(system) and not force:
            raise ValueError(f"calibrate: {r.path} ran on {device}, profile {system!r} is a {device_class(system)}"
                             " profile; use logs from that device class (or --force)")
        row = spec_to_row(spec)
        row["framework"] = _framework_ran(r, spec.system.framework, system or device)
        row.update({"gpus": lay["world_size"], "tp": lay["tp"], "pp": lay["pp"], "dp": lay["dp"], "vpp": lay["vpp"],
                    "micro_batch": lay["micro_batch"], "global_batch": r.global_batch,
                    # the trainer records the precision it resolved; older logs only have the config's
                    "precision": lay.get("precision") or resolve_precision(spec.train.precision, device),
                    "iter_time_s": r.step_time_s, "num_params": r.num_params})
        rows.append(row)
        paths.append(r.path)
    if not rows:
        raise ValueError("calibrate: no completed constant-batch run logs with a config attribute (ramp runs are left out)")
    ran = {row["framework"]: path for row, path in zip(rows, paths)}
    if len(ran) > 1:
        (a, pa), (b, pb) = list(ran.items())[:2]
        raise ValueError(f"calibrate: the logs ran two frameworks, {a} ({pa}) and {b} ({pb}); a profile is fitted for"
                         " one: calibrate each set of logs on its own")
    return {k: np.array([row[k] for row in rows]) for k in rows[0]}


def _framework_ran(r, planned: str, system: str) -> str:
    """The preset a log ran: what its ``kernels`` attribute says (``frameworks.kernels_framework``), refused in
    one line when the plan priced it as another one; the plan's (resolved) preset for a log without one."""
    from batchlaw.simulator.frameworks import kernels_framework, resolve_name

    logged = kernels_framework(r.kernels) if r.kernels else ""
    plan = resolve_name(planned, system)
    if logged and planned.strip().lower() != "batchlaw" and plan != logged:
        raise ValueError(f"calibrate: {r.path} was planned as framework {plan} but its kernels attribute says"
                         f" {logged} ran (linear layers {r.kernels.get('linear')}); set system.framework = {logged}"
                         f" for these runs, or run them where the planned kernels are installed")
    return logged or plan


def _fit(rows, start, params, prior_sigma):
    from batchlaw.simulator.calibrate import calibrate

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = calibrate(rows, start, params=params, prior_sigma=prior_sigma)
    for w in caught:
        print(f"warning: {w.category.__name__}: {w.message}")
    return out


def _print_runs(rows, start, final) -> None:
    """Each run's step time: predicted by the starting profile (as planned) and by the fitted one, and logged."""
    from batchlaw.simulator.table import predict_table

    before = predict_table(rows, start)["pred_iter_time_s"]
    after = predict_table(rows, final)["pred_iter_time_s"]
    print(f"{'run':40s} {'planned_s':>10s} {'fitted_s':>10s} {'logged_s':>10s}")
    for i in np.argsort(rows["num_params"], kind="stable"):
        name = f"{rows['model'][i]} b{int(rows['global_batch'][i])} tp{int(rows['tp'][i])} pp{int(rows['pp'][i])}"
        print(f"{name:40s} {before[i]:10.4g} {after[i]:10.4g} {rows['iter_time_s'][i]:10.4g}")


def run(args: argparse.Namespace) -> int:
    from batchlaw.simulator.calibrate import errors
    from batchlaw.simulator.system import gpu_profile_name, load_system, prior_params, save_system
    from batchlaw.tools.logs import load_runs, print_skipped, skipped_status

    if not (args.prior_sigma >= 0 and np.isfinite(args.prior_sigma)):
        raise ValueError(f"--prior-sigma = {args.prior_sigma!r}: must be a finite number >= 0")
    start = load_system(args.system)
    skipped: list[str] = []
    runs = load_runs(args.logdir, errors=skipped)
    try:
        rows = rows_from_logs(runs, start.name, force=args.force, skipped=skipped)
    finally:  # the logs it left out are named even when nothing usable remains
        print_skipped(skipped)
    ran = str(rows["framework"][0])
    if start.calibration.framework and start.calibration.framework != ran:
        raise ValueError(f"calibrate: profile {args.system!r} was fitted on {start.calibration.framework} runs and these"
                         f" logs ran {ran}; start from a profile not fitted on logs (e.g. {gpu_profile_name(start.name)})"
                         f" or from one fitted on {ran} runs")
    params = tuple(p.strip() for p in args.params.split(",") if p.strip())
    n = len(rows["iter_time_s"])
    if n < len(params):
        raise ValueError(f"calibrate: {n} usable run{'s' if n != 1 else ''} (completed, constant batch) for"
                         f" {len(params)} parameters ({', '.join(params)}); give more runs or fewer --params (the"
                         " prior keeps the rest at the profile's values)")
    order = np.lexsort((rows["global_batch"], rows["num_params"]))
    fit_idx, held_idx = order[::2], order[1::2]
    pick = lambda idx: {k: v[idx] for k, v in rows.items()}
    if len(held_idx) and len(fit_idx) >= len(params):
        fitted, _ = _fit(pick(fit_idx), start, params, args.prior_sigma)
        before = np.abs(errors(pick(held_idx), start))
        after = np.abs(errors(pick(held_idx), fitted))
        print(f"held-out runs ({len(held_idx)}): median |error| of step time {np.median(before):.1%} before,"
              f" {np.median(after):.1%} after (worst {after.max():.1%})")
    final, report = _fit(rows, start, params, args.prior_sigma)
    _print_runs(rows, start, final)
    out = Path(args.out) if args.out else Path(args.logdir) / f"{start.name}-calibrated.toml"
    save_system(final, out, comment=f"Calibrated by batchlaw calibrate on {n} runs in {args.logdir}.")
    print(f"all {n} runs: median |error| {report.median_abs_error_before:.1%} -> {report.median_abs_error_after:.1%};"
          f" fitted " + ", ".join(f"{k}={v:.3g}" for k, v in report.fitted.items()))
    priors = prior_params(final)
    print(f"framework {ran}; still priors (not fitted, or not identified by these runs): {', '.join(priors) or 'none'}")
    print(f"wrote {out}")
    return skipped_status(skipped)
