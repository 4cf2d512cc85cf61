"""Rank entry point: ``torchrun --nproc_per_node=N -m batchlaw.plugin.train RUN.toml [--set k=v ...]``.

Parse, build, run, always close. NCCL on GPUs; gloo and the CPU patches when CUDA is unavailable.
Exit status 0 on completion and on a signal-triggered checkpoint (the job may be requeued), 1 when
the run failed (non-finite steps) or another trainer holds the run (``plugin/lease.py``), 2 for a
config the checks refuse.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys


def main(argv: list[str] | None = None) -> int:
    from batchlaw.plugin.signals import any_rank, catch_early

    early = catch_early()  # a stop requested while this rank starts up is kept, not lost
    parser = argparse.ArgumentParser(prog="python -m batchlaw.plugin.train", description=__doc__.splitlines()[0])
    parser.add_argument("config", help="run TOML (configs/runs/*.toml)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    from batchlaw.plugin.prelaunch import check_prelaunch
    from batchlaw.simulator.runconfig import load_run_config

    try:
        cfg = load_run_config(args.config, args.overrides)
    except ValueError as exc:
        print(f"batchlaw train: error: {exc}", file=sys.stderr)
        return 2
    from batchlaw.plugin.launch import init_args, setup_env

    try:
        setup_env()  # rank, world, master from torchrun, srun (one task per GPU) or mpirun
    except (ValueError, ImportError) as exc:
        print(f"batchlaw train: error: {exc}", file=sys.stderr)
        return 2
    import torch
    import torch.distributed as dist

    on_cpu = not torch.cuda.is_available()
    if on_cpu:
        from batchlaw.plugin.cpu import apply_cpu_patches

        apply_cpu_patches()
        torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    else:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")) % torch.cuda.device_count())  # 1 GPU/task too
    logging.basicConfig(level=logging.INFO if int(os.environ.get("RANK", "0")) == 0 else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("megatron").setLevel(logging.WARNING)
    # GPU: NCCL for CUDA tensors, gloo for the few host scalars (stop flag, noise-scale sums).
    dist.init_process_group("gloo" if on_cpu else "cpu:gloo,cuda:nccl", **init_args())
    status, lease = "failed", None
    try:
        from batchlaw.plugin import _mcore
        from batchlaw.plugin.checkpoint import CheckpointsDamaged, ResumeError
        from batchlaw.plugin.loop import Trainer

        try:
            check_prelaunch(cfg, on_cpu=on_cpu)
        except ValueError as exc:
            print(f"batchlaw train: error: {exc}", file=sys.stderr)
            return 2
        from batchlaw.plugin.lease import acquire_on_rank0, lease_paths

        lease, refused = acquire_on_rank0(lease_paths(cfg.checkpoint.dir, cfg.log.path), dist.get_rank())
        if any_rank(bool(refused)):  # every rank stops (rank 0 said why): one trainer per run
            return 1
        try:
            trainer = Trainer(cfg, on_cpu=on_cpu)
        except ValueError as exc:
            print(f"batchlaw train: error: {exc}", file=sys.stderr)
            return 2
        trainer.stop.raised = trainer.stop.raised or bool(early)
        try:
            status = trainer.run()
        except (ResumeError, CheckpointsDamaged) as exc:  # found when the checkpoints are opened: one line
            if dist.get_rank() == 0 or isinstance(exc, ResumeError):
                print(f"batchlaw train: error: {exc}", file=sys.stderr)
            return 2 if isinstance(exc, ResumeError) else 1
        if dist.get_rank() == 0:
            trainer.write_marker(status)
        return 1 if status == "failed" else 0
    finally:
        if lease is not None:
            lease.release()
        if dist.is_initialized():
            try:
                _mcore.destroy_parallel()
            except Exception:  # noqa: BLE001 - best effort on the way out
                pass
            dist.destroy_process_group()


if __name__ == "__main__":
    sys.exit(main())
