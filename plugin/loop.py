"""The training loop: ramp -> global batch -> micro-batches -> megatron forward-backward ->
optimizer -> noise scale -> metrics row -> signals and checkpoints.

Everything is built from a ``RunSpec`` by ``Trainer``; process groups are taken once from
megatron's parallel_state in ``_Groups`` and passed explicitly from there on.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from batchlaw.plugin import _mcore, runmeta
from batchlaw.plugin.checkpoint import load_checkpoint, resume_point, save_checkpoint
from batchlaw.plugin.data import TokenWindows, micro_batches
from batchlaw.plugin.gns import GnsTracker, SplitStep, gns_mode
from batchlaw.plugin.metrics import HDF5Sink, NullSink, SinkContainer, StdoutSink, TensorBoardSink, is_metrics_rank
from batchlaw.plugin.model import build_model
from batchlaw.plugin.optim import LrSchedule
from batchlaw.plugin.signals import StopFlag
from batchlaw.simulator import config as _config
from batchlaw.simulator.noise import EmaNoiseScale
from batchlaw.simulator.params import flops_per_step
from batchlaw.simulator.ramp import AdaptiveRamp
from batchlaw.simulator.runconfig import RunSpec
from batchlaw.simulator.spec import resolve_precision, validate_run

__all__ = ["MAX_SKIPS_IN_A_ROW", "Trainer"]

log = logging.getLogger(__name__)

MAX_SKIPS_IN_A_ROW = 32
"""Consecutive steps skipped for a non-finite loss or gradients after which the run stops as failed.
fp16 skips while its loss scaler searches: megatron's hysteresis of 2 plus one halving per overflow
takes about 19 skips from an initial 2^32 down to a scale of 2^14."""


@dataclass(frozen=True)
class _Groups:
    """Ranks and process groups of this process, read once from megatron's parallel_state."""

    dp: Any
    mp: Any
    embedding: Any
    dp_rank: int
    dp_size: int
    tp_rank: int
    pp_rank: int
    pp_size: int

    @classmethod
    def from_megatron(cls, tied_and_pp: bool) -> "_Groups":
        return cls(**_mcore.groups(tied_and_pp))

    @property
    def last_stage(self) -> bool:
        return self.pp_rank == self.pp_size - 1


def _peak_flops() -> float:
    """Dense 16-bit peak FLOP/s of this rank's GPU (NaN on CPU or for a GPU without a profile)."""
    if not torch.cuda.is_available():
        return math.nan
    props = torch.cuda.get_device_properties(torch.cuda.current_device())
    return runmeta.peak_flops(torch.cuda.get_device_name(), props.total_memory / 2**30)


class Trainer:
    """Builds model, optimizer, data, ramp, noise-scale tracker and sinks for one run, then trains."""

    def __init__(self, cfg: RunSpec, *, on_cpu: bool):
        self.cfg, self.on_cpu = cfg, on_cpu
        self.device = torch.device("cpu") if on_cpu else torch.device("cuda", torch.cuda.current_device())
        world = dist.get_world_size()
        par, shape = cfg.parallel, cfg.model
        self.dp_size = validate_run(shape, par, world_size=world, global_batch=cfg.train.global_batch,
                                    ramp=cfg.train.ramp)
        _mcore.init_parallel(par.tp, par.pp, par.vpp)
        self.g = _Groups.from_megatron(shape.tied_embeddings and par.pp > 1)
        _mcore.seed_model_parallel(cfg.train.seed, on_cpu)
        torch.manual_seed(cfg.train.seed)
        precision = resolve_precision(cfg.train.precision, "cpu" if on_cpu else "gpu")
        self.dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
        self.loss_scaled = precision == "fp16"  # megatron's grad scaler checks fp16 gradients itself
        chunks, self.tcfg = build_model(shape, par, seed=cfg.train.seed, dtype=self.dtype, on_cpu=on_cpu)
        self.models = _mcore.build_ddp(self.tcfg, chunks, overlap_grad_reduce=par.overlap_grad_reduce,
                                       distributed_optimizer=par.distributed_optimizer)
        self.optimizer = _mcore.build_optimizer(self.tcfg, self.models, cfg.train, precision=precision,
                                                distributed_optimizer=par.distributed_optimizer)
        self.kernels = _mcore.kernels(self.models, self.optimizer)
        if dist.get_rank() == 0:
            log.info("megatron-core %s, %s: kernels %s", _mcore.VERSION, precision,
                     ", ".join(f"{k}={v}" for k, v in self.kernels.items()))
        self.ramp = cfg.train.ramp.bind(global_batch=cfg.train.global_batch,
                                        granularity=par.micro_batch * self.dp_size, seq_len=shape.seq_len)
        self.total_samples = self._total_samples()
        self.lr_schedule = LrSchedule.from_train(cfg.train, self.total_samples)
        self.data = TokenWindows(cfg.data.kind, cfg.data.path, shape.seq_len, shape.vocab, cfg.train.seed,
                                 cfg.data.valid_fraction)
        self._gns_tracker = GnsTracker(self.models, dp_group=self.g.dp, mp_group=self.g.mp,
                                       embedding_group=self.g.embedding)
        self._split = SplitStep(self._gns_tracker, self.models, pp_size=self.g.pp_size,
                                micro_batch=par.micro_batch)
        self.tracker, self._hooks_installed = None, False
        self.enable_gns(cfg.log.gns)
        self.ema = EmaNoiseScale()
        self.step, self.consumed = 0, 0
        self.layout = {"world_size": world, "tp": par.tp, "pp": par.pp, "vpp": par.vpp, "dp": self.dp_size,
                       "micro_batch": par.micro_batch, "precision": precision}  # train.precision as resolved
        self.num_params = self._count_params()
        self.peak_flops = _peak_flops() * world
        self.stop = StopFlag(cfg.checkpoint.stop_file)
        self._mask = (torch.tril(torch.ones(1, 1, shape.seq_len, shape.seq_len)) < 0.5).to(self.device)
        self._saved_step = -1
        self.skips_in_a_row = 0

    # setup helpers -----------------------------------------------------------------------------
    def _total_samples(self) -> int:
        if self.cfg.train.steps > 0:
            consumed = 0
            for _ in range(self.cfg.train.steps):
                consumed += self.ramp(consumed)
            return consumed
        return self.cfg.total_samples()

    def _count_params(self) -> int:
        n = sum(p.numel() for p in _mcore.unwrapped_params(self.models) if _mcore.param_counts_once(p))
        t = torch.tensor([n], dtype=torch.int64, device=self.device)
        dist.all_reduce(t, group=self.g.mp)
        return int(t.item())

    def make_sinks(self, resume_step: int | None = None):
        """The metric sinks of this rank (real ones on the metrics rank only)."""
        log_cfg = self.cfg.log
        if not is_metrics_rank(tp_rank=self.g.tp_rank, dp_rank=self.g.dp_rank, pp_rank=self.g.pp_rank,
                               pp_size=self.g.pp_size):
            return NullSink()
        sinks: list[Any] = []
        if log_cfg.path:
            from batchlaw.plugin.h5log import RunLogWriter

            config = _config.to_dict(self.cfg)  # reads back to the same RunSpec (runconfig.spec_from_dict)
            layout = {**self.layout, "device": "cpu" if self.on_cpu else "cuda"}
            attrs = {"config": config, "git_sha": runmeta.git_sha(), "layout": layout, "cwd": str(Path.cwd()),
                     "versions": runmeta.versions(),
                     "kernels": self.kernels,
                     "model_name": self.cfg.model.name, "num_params": self.num_params,
                     "seq_len": self.cfg.model.seq_len, "ramp": self.cfg.train.ramp.text}
            writer = RunLogWriter(log_cfg.path, attrs=attrs, flush_every=log_cfg.flush_every,
                                  resume_step=resume_step, overwrite=resume_step is None)
            sinks.append(HDF5Sink(writer))
        if log_cfg.tensorboard:
            sinks.append(TensorBoardSink(log_cfg.tensorboard))
        if log_cfg.stdout_every:  # last: a printed step is already in the log (flushed when flush_every = 1)
            sinks.append(StdoutSink(log_cfg.stdout_every))
        return SinkContainer(sinks)

    # one step ----------------------------------------------------------------------------------
    def _forward_step(self, batches, model):
        self._split.before_micro_batch()
        mb = next(batches)
        out = model(mb.tokens.to(self.device), mb.position_ids.to(self.device), self._mask,
                    labels=mb.labels.to(self.device))

        def loss_func(output_tensor):
            loss = output_tensor.float().mean()
            return loss, {"lm loss": loss.detach().clone()}  # clone: the schedule divides in place

        return out, loss_func

    def _run_schedule(self, mbs, forward_only: bool = False) -> list[dict]:
        cfg = self.cfg
        return _mcore.forward_backward(step_fn=self._forward_step, batches=[iter(mbs) for _ in self.models],
                                       models=self.models, num_micro_batches=len(mbs), seq_len=cfg.model.seq_len,
                                       micro_batch=cfg.parallel.micro_batch, forward_only=forward_only)

    def evaluate(self) -> float:
        """Mean validation loss over ``train.eval_batches`` micro-batches per DP rank (same samples
        every time, so values along the run are comparable)."""
        mb = self.cfg.parallel.micro_batch
        mbs = micro_batches(self.data, consumed=0, global_batch=self.cfg.train.eval_batches * mb * self.dp_size,
                            dp_rank=self.g.dp_rank, dp_size=self.dp_size, micro_batch=mb, valid=True)
        with torch.no_grad():
            losses = self._run_schedule(mbs, forward_only=True)
        return self._mean_loss(losses)

    def train_step(self) -> dict[str, float]:
        """One optimizer step; returns its metrics row (every rank computes it; one rank logs it).

        A step whose loss or gradients are not finite never updates the weights, in any precision: fp16
        through megatron's loss scaler (it also lowers the scale), bf16/fp32 through a check of every
        rank's reduced gradient buffers and the loss, agreed over all ranks before the update (no scaler
        checks them there, and megatron would clip with a NaN norm and write NaN weights). The row says
        ``skipped = 1`` with NaN norms and noise-scale columns; the counters move on (the batch is
        consumed, as megatron's fp16 skip does) and ``self.skips_in_a_row`` counts the streak.
        """
        batch = self.ramp(self.consumed)
        mbs = micro_batches(self.data, consumed=self.consumed, global_batch=batch, dp_rank=self.g.dp_rank,
                            dp_size=self.dp_size, micro_batch=self.cfg.parallel.micro_batch)
        lr = self.lr_schedule(self.consumed, batch)
        _mcore.set_lr(self.optimizer, lr)
        loss_scale = _mcore.loss_scale(self.optimizer)  # the scale this step's backward uses
        t0 = time.perf_counter()
        _mcore.zero_grads(self.models, self.optimizer)
        mode = gns_mode(measuring=self.tracker is not None, dp_size=self.dp_size, pp_size=self.g.pp_size,
                        num_chunks=len(self.models), tied_and_pp=self.g.pp_size > 1 and self.g.embedding is not None,
                        num_micro_batches=len(mbs))
        if self.tracker:
            self.tracker.begin_step()
        small_sq, b_small = None, batch // self.dp_size
        if mode == "split":
            losses, small_sq, b_small = self._split.run(mbs, self._run_schedule)
            small_sq /= loss_scale ** 2
        else:
            losses = self._run_schedule(mbs)
        loss = self._mean_loss(losses)
        if self.loss_scaled:  # fp16: megatron's scaler finds inf/NaN in the unscaled gradients itself
            applied, grad_norm = _mcore.optimizer_step(self.optimizer)
        elif self._any_rank((self.g.last_stage and not math.isfinite(loss)) or not _mcore.grads_finite(self.models)):
            applied, grad_norm = False, math.nan
        else:
            applied, grad_norm = _mcore.optimizer_step(self.optimizer)
        if not self.on_cpu:
            torch.cuda.synchronize()
        dt = time.perf_counter() - t0
        self.skips_in_a_row = 0 if applied else self.skips_in_a_row + 1
        self.step, self.consumed, seq = self.step + 1, self.consumed + batch, self.cfg.model.seq_len
        step, consumed = self.step, self.consumed
        if not applied and not self.loss_scaled and dist.get_rank() == 0:
            log.warning("step %d: loss %s, gradients not all finite: update skipped (%d in a row; the run stops as"
                        " failed at %d)", step, f"{loss:.4g}", self.skips_in_a_row, MAX_SKIPS_IN_A_ROW)
        row = {"step": step, "consumed_samples": consumed, "tokens": consumed * seq,
               "global_batch_size": batch, "num_micro_batches": len(mbs), "lr": lr, "step_time_s": dt,
               "tokens_per_s": batch * seq / dt, "loss": loss, "grad_norm": grad_norm, "skipped": int(not applied),
               "loss_scale": loss_scale, "mfu": self._model_flops(batch) / dt / self.peak_flops,
               "mem_gib": math.nan if self.on_cpu else torch.cuda.max_memory_allocated() / 2**30}
        if self.tracker:
            gns = self.tracker.end_step(b_small=b_small, b_big=batch, grad_norm=grad_norm, loss_scale=loss_scale,
                                        small_sq=small_sq)
            if mode == "none" or not applied:
                keep = ("grad_norm", "gns_b_big", "gns_big_sq") if applied else ("gns_b_big",)
                gns = {k: (v if k in keep else math.nan) for k, v in gns.items()}
            row.update(gns)
        return row

    def _any_rank(self, flag: bool) -> bool:
        """True on every rank if ``flag`` is True on any rank (collective over the world)."""
        t = torch.tensor([1.0 if flag else 0.0], device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item())

    def _model_flops(self, batch: int) -> float:
        """Model FLOPs of one step (Narayanan et al. 2021, eq. 3 generalised; simulator/params.py)."""
        s = self.cfg.model
        model, _ = flops_per_step(batch, s.seq_len, s.layers, s.hidden, s.heads, s.num_query_groups, s.ffn, s.vocab,
                                  gated=s.activation == "swiglu")
        return float(model)

    def _mean_loss(self, losses: list[dict]) -> float:
        if not self.g.last_stage:
            return math.nan
        loss = torch.stack([x["lm loss"] for x in losses]).mean().reshape(1).double()
        dist.all_reduce(loss, group=self.g.dp)
        return float(loss) / self.g.dp_size

    # run ---------------------------------------------------------------------------------------
    def _loop_state(self) -> dict[str, Any]:
        state = {"step": self.step, "consumed": self.consumed, "ema": self.ema.state_dict()}
        if isinstance(self.ramp, AdaptiveRamp):
            state["ramp"] = self.ramp.state_dict()
        return state

    def _resume(self) -> int | None:
        ck = self.cfg.checkpoint
        path = resume_point(ck.dir) if ck.dir and ck.resume else None
        if path is None:
            return None
        state = load_checkpoint(path, models=self.models, optimizer=self.optimizer, layout=self.layout,
                                distributed_optimizer=self.cfg.parallel.distributed_optimizer)
        self.step, self.consumed = state["step"], state["consumed"]
        self.ema.load_state_dict(state["ema"])
        if "ramp" in state and isinstance(self.ramp, AdaptiveRamp):
            self.ramp.load_state_dict(state["ramp"])
        log.info("resumed from %s at step %d (%d samples)", path, self.step, self.consumed)
        return self.step

    def _checkpoint(self, sinks) -> None:
        """Flush the log up to this step, then save: a published checkpoint never runs ahead of the
        log, so a kill at any moment followed by a resume (which truncates the log to the checkpoint)
        loses no logged step and duplicates none."""
        ck = self.cfg.checkpoint
        if ck.dir and self.skips_in_a_row and self._saved_step != self.step:
            if dist.get_rank() == 0:
                log.warning("step %d: not checkpointed after %d skipped steps in a row; the newest checkpoint stays"
                            " the one a resume picks", self.step, self.skips_in_a_row)
            self._saved_step = self.step
        if ck.dir and self._saved_step != self.step:
            sinks.flush()
            save_checkpoint(ck.dir, step=self.step, models=self.models, optimizer=self.optimizer,
                            loop_state=self._loop_state(), layout=self.layout,
                            distributed_optimizer=self.cfg.parallel.distributed_optimizer, keep=ck.keep)
            self._saved_step = self.step

    def _done(self) -> bool:
        if self.cfg.train.steps > 0:
            return self.step >= self.cfg.train.steps
        return self.consumed >= self.total_samples

    def enable_gns(self, on: bool) -> None:
        """Switch the noise-scale measurement on or off (the bucket hooks are installed only where the
        estimator reads them: DP > 1, or PP > 1; DP = PP = 1 reads the buffers in ``SplitStep``)."""
        hooks = on and (self.dp_size > 1 or self.g.pp_size > 1)
        if hooks and not self._hooks_installed:
            self._gns_tracker.install()
        elif not hooks and self._hooks_installed:
            self._gns_tracker.remove()
        self._hooks_installed = hooks
        self.tracker = self._gns_tracker if on else None

    def advance(self, sinks) -> dict[str, float]:
        """One step and its bookkeeping: smoothing, adaptive ramp, metrics, validation, periodic checkpoint."""
        row = self.train_step()
        b_simple = self.ema.update(row.get("gns_g2", math.nan), row.get("gns_trace", math.nan))
        if isinstance(self.ramp, AdaptiveRamp):
            decision = self.ramp.observe(self.step, b_simple)
            if decision:
                sinks.log_event("ramp", decision)
        sinks.log_step(row)
        eval_every = self.cfg.train.eval_every
        if eval_every and (self.step % eval_every == 0 or self._done()):
            sinks.log_event("eval", {"step": self.step, "tokens": row["tokens"], "val_loss": self.evaluate()})
        every = self.cfg.checkpoint.every
        if every and self.step % every == 0 and not self._done():
            self._checkpoint(sinks)
        return row

    def write_marker(self, status: str) -> None:
        """Rank 0, after ``run``: ``log.done_marker`` (COMPLETED) when the step budget is done, INTERRUPTED
        beside it when the run checkpointed and stopped on request (signal, stop file,
        ``train.exit_after_steps``), so that the job script requeues instead of failing."""
        if status not in ("completed", "interrupted") or not self.cfg.log.done_marker:
            return
        marker = Path(self.cfg.log.done_marker)
        marker = marker if status == "completed" else marker.with_name("INTERRUPTED")
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(f"{status}\n")

    def run(self) -> str:
        """Train to the end of the budget or until a stop request; returns the final status."""
        resume_step = self._resume()
        sinks = self.make_sinks(resume_step)
        status = "failed"
        first_step = self.step
        exit_after = self.cfg.train.exit_after_steps
        try:
            while not self._done():
                self.advance(sinks)
                if self.skips_in_a_row >= MAX_SKIPS_IN_A_ROW:
                    if dist.get_rank() == 0:
                        log.error("step %d: %d steps in a row skipped (non-finite loss or gradients); stopping as"
                                  " failed, no checkpoint written: the newest one stays the one a resume picks",
                                  self.step, self.skips_in_a_row)
                    return status
                interval = exit_after and self.step - first_step >= exit_after and not self._done()
                if self.stop.agreed(device=self.device) or interval:
                    self._checkpoint(sinks)
                    status = "interrupted"
                    return status
            self._checkpoint(sinks)
            status = "completed"
            return status
        finally:
            self.stop.uninstall()
            sinks.close(status)
