"""The training loop: ramp -> global batch -> micro-batches -> megatron forward-backward ->
optimizer -> noise scale -> metrics row -> signals and checkpoints.

Everything is built from a ``RunConfig`` by ``Trainer``; process groups are taken once from
megatron's parallel_state in ``_Groups`` and passed explicitly from there on.
"""

from __future__ import annotations

import logging
import math
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from batchlaw.plugin import _mcore
from batchlaw.plugin.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from batchlaw.plugin.data import TokenWindows, micro_batches
from batchlaw.plugin.gns import GnsTracker
from batchlaw.plugin.metrics import HDF5Sink, NullSink, SinkContainer, StdoutSink, TensorBoardSink, is_metrics_rank
from batchlaw.plugin.model import build_model
from batchlaw.simulator.runconfig import RunConfig
from batchlaw.simulator import config as _config
from batchlaw.simulator.noise import EmaNoiseScale
from batchlaw.simulator.ramp import AdaptiveRamp, lr_scale, parse_ramp
from batchlaw.simulator.spec import validate_run

__all__ = ["Trainer"]

log = logging.getLogger(__name__)


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
        ps = _mcore.parallel_state
        return cls(dp=ps.get_data_parallel_group(), mp=ps.get_model_parallel_group(),
                   embedding=ps.get_embedding_group() if tied_and_pp else None,
                   dp_rank=ps.get_data_parallel_rank(), dp_size=ps.get_data_parallel_world_size(),
                   tp_rank=ps.get_tensor_model_parallel_rank(), pp_rank=ps.get_pipeline_model_parallel_rank(),
                   pp_size=ps.get_pipeline_model_parallel_world_size())

    @property
    def last_stage(self) -> bool:
        return self.pp_rank == self.pp_size - 1


def _git_sha() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


class _StopFlag:
    """SIGTERM / SIGUSR1 (or a stop file) set a flag; the loop acts on it at the next step boundary,
    after all ranks agree (one all-reduce of a scalar per step)."""

    def __init__(self, stop_file: str = ""):
        self.raised = False
        self.stop_file = Path(stop_file) if stop_file else None
        for sig in (signal.SIGTERM, signal.SIGUSR1):
            signal.signal(sig, self._handler)

    def _handler(self, signum, frame):
        self.raised = True

    def agreed(self) -> bool:
        if self.stop_file is not None and self.stop_file.exists():
            self.raised = True
        flag = torch.tensor([1.0 if self.raised else 0.0])
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item())


class Trainer:
    """Builds model, optimizer, data, ramp, noise-scale tracker and sinks for one run, then trains."""

    def __init__(self, cfg: RunConfig, *, on_cpu: bool):
        self.cfg, self.on_cpu = cfg, on_cpu
        world = dist.get_world_size()
        par, shape = cfg.parallel, cfg.model
        self.dp_size = validate_run(shape, par, world_size=world, global_batch=cfg.train.global_batch)
        _mcore.init_parallel(par.tp, par.pp, par.vpp)
        self.g = _Groups.from_megatron(shape.tied_embeddings and par.pp > 1)
        _mcore.seed_model_parallel(cfg.train.seed, on_cpu)
        torch.manual_seed(cfg.train.seed)
        precision = cfg.train.precision if cfg.train.precision != "auto" else ("fp32" if on_cpu else "bf16")
        self.dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
        module, self.tcfg = build_model(shape, par, seed=cfg.train.seed, dtype=self.dtype, on_cpu=on_cpu)
        ddp_cfg = _mcore.DistributedDataParallelConfig(
            grad_reduce_in_fp32=True, overlap_grad_reduce=par.overlap_grad_reduce,
            use_distributed_optimizer=par.distributed_optimizer)
        self.model = _mcore.DistributedDataParallel(config=self.tcfg, ddp_config=ddp_cfg, module=module)
        self.tcfg.finalize_model_grads_func = _mcore.finalize_model_grads
        self.tcfg.no_sync_func = self.model.no_sync
        self.optimizer = _mcore.get_megatron_optimizer(_mcore.OptimizerConfig(
            optimizer="adam", lr=cfg.train.lr, min_lr=cfg.train.min_lr, weight_decay=cfg.train.weight_decay,
            adam_beta2=cfg.train.adam_beta2, clip_grad=cfg.train.clip_grad, bf16=precision == "bf16",
            fp16=precision == "fp16", use_distributed_optimizer=par.distributed_optimizer), [self.model])
        self.granularity = par.micro_batch * self.dp_size
        self.ramp = parse_ramp(cfg.train.ramp, global_batch=cfg.train.global_batch,
                               granularity=self.granularity, seq_len=shape.seq_len)
        self.total_samples = self._total_samples()
        self.data = TokenWindows(cfg.data.kind, cfg.data.path, shape.seq_len, shape.vocab, cfg.train.seed,
                                 cfg.data.valid_fraction)
        self.tracker = GnsTracker([self.model], dp_group=self.g.dp, mp_group=self.g.mp,
                                  embedding_group=self.g.embedding) if cfg.log.gns else None
        if self.tracker:
            self.tracker.install()
        self.ema = EmaNoiseScale()
        self.step, self.consumed = 0, 0
        self.layout = {"world_size": world, "tp": par.tp, "pp": par.pp, "vpp": par.vpp, "dp": self.dp_size,
                       "micro_batch": par.micro_batch}
        self.num_params = self._count_params()
        self.stop = _StopFlag(cfg.checkpoint.stop_file)
        self.forward_backward = _mcore.get_forward_backward_func()
        self._mask = torch.tril(torch.ones(1, 1, shape.seq_len, shape.seq_len)) < 0.5

    # setup helpers -----------------------------------------------------------------------------
    def _total_samples(self) -> int:
        if self.cfg.train.steps > 0:
            consumed = 0
            for _ in range(self.cfg.train.steps):
                consumed += self.ramp(consumed)
            return consumed
        return self.cfg.total_samples()

    def _count_params(self) -> int:
        n = sum(p.numel() for p in self.model.module.parameters() if _mcore.param_counts_once(p))
        t = torch.tensor([n], dtype=torch.int64)
        dist.all_reduce(t, group=self.g.mp)
        return int(t.item())

    def _sinks(self, resume_step: int | None):
        log_cfg = self.cfg.log
        if not is_metrics_rank(tp_rank=self.g.tp_rank, dp_rank=self.g.dp_rank, pp_rank=self.g.pp_rank,
                               pp_size=self.g.pp_size):
            return NullSink()
        sinks: list[Any] = [StdoutSink(log_cfg.stdout_every)] if log_cfg.stdout_every else []
        if log_cfg.path:
            from batchlaw.plugin.h5log import RunLogWriter

            config = {**_config.to_dict(self.cfg), "_device": "cpu" if self.on_cpu else "cuda"}
            attrs = {"config": config, "git_sha": _git_sha(), "layout": self.layout,
                     "versions": {"torch": torch.__version__, "megatron_core": _mcore.VERSION},
                     "model_name": self.cfg.model.name, "num_params": self.num_params,
                     "seq_len": self.cfg.model.seq_len, "ramp": self.ramp.describe()}
            writer = RunLogWriter(log_cfg.path, attrs=attrs, flush_every=log_cfg.flush_every,
                                  resume_step=resume_step, overwrite=resume_step is None)
            sinks.append(HDF5Sink(writer))
        if log_cfg.tensorboard:
            sinks.append(TensorBoardSink(log_cfg.tensorboard))
        return SinkContainer(sinks)

    def _lr(self, consumed: int, batch: int) -> float:
        t = self.cfg.train
        if consumed < t.warmup_samples:
            lr = t.lr * (consumed + batch) / t.warmup_samples
        else:
            frac = min(1.0, (consumed - t.warmup_samples) / max(1, self.total_samples - t.warmup_samples))
            shape = {"cosine": 0.5 * (1 + math.cos(math.pi * frac)), "linear": 1 - frac, "constant": 1.0}[t.decay]
            lr = t.min_lr + (t.lr - t.min_lr) * shape
        return lr * lr_scale(batch, t.global_batch, t.lr_scaling)

    # one step ----------------------------------------------------------------------------------
    def _forward_step(self, data_iterator, model):
        mb = next(data_iterator)
        out = model(mb.tokens, mb.position_ids, self._mask, labels=mb.labels)

        def loss_func(output_tensor):
            loss = output_tensor.float().mean()
            return loss, {"lm loss": loss.detach().clone()}  # clone: the schedule divides in place

        return out, loss_func

    def _run_schedule(self, mbs, forward_only: bool = False) -> list[dict]:
        cfg = self.cfg
        return self.forward_backward(forward_step_func=self._forward_step, data_iterator=iter(mbs),
                                     model=self.model, num_microbatches=len(mbs), seq_length=cfg.model.seq_len,
                                     micro_batch_size=cfg.parallel.micro_batch, forward_only=forward_only)

    def evaluate(self) -> float:
        """Mean validation loss over ``train.eval_batches`` micro-batches per DP rank (same samples
        every time, so values along the run are comparable)."""
        mb = self.cfg.parallel.micro_batch
        mbs = micro_batches(self.data, consumed=0, global_batch=self.cfg.train.eval_batches * mb * self.dp_size,
                            dp_rank=self.g.dp_rank, dp_size=self.dp_size, micro_batch=mb, valid=True)
        with torch.no_grad():
            losses = self._run_schedule(mbs, forward_only=True)
        return self._mean_loss(losses)

    def _microbatch_probe(self, mbs) -> tuple[list[dict], float, int]:
        """DP = 1, PP = 1: the step as k equal parts (k = 2, or one micro-batch each when their number
        is odd); returns losses, the mean over parts of |g_part|^2, and the sequences per part."""
        k = 2 if len(mbs) % 2 == 0 else len(mbs)
        parts = [mbs[i * len(mbs) // k:(i + 1) * len(mbs) // k] for i in range(k)]
        buffers = [b.grad_data for b in self.model.buffers]
        acc = [torch.zeros_like(b) for b in buffers]
        losses, sq = [], []
        for part in parts:
            self.model.zero_grad_buffer()
            losses += self._run_schedule(part)
            sq.append(self.tracker.local_sq_now())
            for a, b in zip(acc, buffers):
                a.add_(b)
        for a, b in zip(acc, buffers):
            b.copy_(a / k)
        return losses, sum(sq) / k, len(parts[0]) * self.cfg.parallel.micro_batch

    def train_step(self) -> dict[str, float]:
        batch = self.ramp(self.consumed)
        per_rank = batch // self.dp_size
        mbs = micro_batches(self.data, consumed=self.consumed, global_batch=batch, dp_rank=self.g.dp_rank,
                            dp_size=self.dp_size, micro_batch=self.cfg.parallel.micro_batch)
        lr = self._lr(self.consumed, batch)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        t0 = time.perf_counter()
        self.model.zero_grad_buffer()
        self.optimizer.zero_grad()
        small_sq = None
        if self.tracker:
            self.tracker.begin_step()
        probe = self.tracker is not None and self.dp_size == 1 and self.g.pp_size == 1 and len(mbs) > 1
        if probe:
            losses, small_sq, probe_batch = self._microbatch_probe(mbs)
        else:
            losses = self._run_schedule(mbs)
        if self.cfg.train.clip_grad <= 0:
            grad_norm = float(self.optimizer.get_grad_norm())
        ok, norm, _ = self.optimizer.step()
        if self.cfg.train.clip_grad > 0:
            grad_norm = float(norm)
        if not self.on_cpu:
            torch.cuda.synchronize()
        dt = time.perf_counter() - t0
        self.consumed += batch
        self.step += 1
        row = {"step": self.step, "consumed_samples": self.consumed, "tokens": self.consumed * self.cfg.model.seq_len,
               "global_batch_size": batch, "num_micro_batches": len(mbs), "lr": lr, "step_time_s": dt,
               "tokens_per_s": batch * self.cfg.model.seq_len / dt, "loss": self._mean_loss(losses),
               "grad_norm": grad_norm, "loss_scale": float(self.optimizer.get_loss_scale())}
        if self.tracker:
            b_small = probe_batch if probe else per_rank
            row.update(self.tracker.end_step(b_small=b_small, b_big=batch, grad_norm=grad_norm,
                                             loss_scale=row["loss_scale"], small_sq=small_sq))
        return row

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
        path = latest_checkpoint(ck.dir) if ck.dir and ck.resume else None
        if path is None:
            return None
        state = load_checkpoint(path, model=self.model, optimizer=self.optimizer, layout=self.layout,
                                distributed_optimizer=self.cfg.parallel.distributed_optimizer)
        self.step, self.consumed = state["step"], state["consumed"]
        self.ema.load_state_dict(state["ema"])
        if "ramp" in state and isinstance(self.ramp, AdaptiveRamp):
            self.ramp.load_state_dict(state["ramp"])
        log.info("resumed from %s at step %d (%d samples)", path, self.step, self.consumed)
        return self.step

    def _checkpoint(self) -> None:
        ck = self.cfg.checkpoint
        if ck.dir:
            save_checkpoint(ck.dir, step=self.step, model=self.model, optimizer=self.optimizer,
                            loop_state=self._loop_state(), layout=self.layout,
                            distributed_optimizer=self.cfg.parallel.distributed_optimizer, keep=ck.keep)

    def _done(self) -> bool:
        if self.cfg.train.steps > 0:
            return self.step >= self.cfg.train.steps
        return self.consumed >= self.total_samples

    def run(self) -> str:
        """Train to the end of the budget or until a signal; returns the final status."""
        resume_step = self._resume()
        sinks = self._sinks(resume_step)
        status = "failed"
        first_step = self.step
        exit_after = self.cfg.train.exit_after_steps
        try:
            while not self._done():
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
                    self._checkpoint()
                if self.stop.agreed() or (exit_after and self.step - first_step >= exit_after
                                          and not self._done()):
                    self._checkpoint()
                    status = "interrupted"
                    return status
            self._checkpoint()
            status = "completed"
            return status
        finally:
            sinks.close(status)
