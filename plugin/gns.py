"""Gradient noise scale: the two-batch unbiased estimator inside a megatron-core training step.

McCandlish et al. 2018 ("An Empirical Model of Large-Batch Training"), appendix A: with
|G_small|^2 the squared norm of a gradient over B_small samples and |G_big|^2 over B_big samples,

    |G|^2     = (B_big |G_big|^2 - B_small |G_small|^2) / (B_big - B_small)      (eq. A.3)
    tr(Sigma) = (|G_small|^2 - |G_big|^2) / (1 / B_small - 1 / B_big)            (eq. A.4)

are unbiased; B_simple = tr(Sigma) / |G|^2 must be formed from separately smoothed numerator and
denominator, never by smoothing the per-step ratio (done offline, ``simulator/noise.py``).

Where the numbers come from in megatron-core:
- DP >= 2: B_small = one DP rank's batch, |G_small|^2 = mean over DP ranks of the local (pre-DP-
  reduction) squared norm. The local gradient is read in a wrapper of each DDP bucket group's
  ``start_grad_sync`` *before* it scales ``grad_data`` by 1/dp and launches the collective; the
  wrapper does no collective itself (safe with ``overlap_grad_reduce``, where it runs inside a
  backward hook). The reductions over the model-parallel and DP groups happen in ``end_step``.
- DP = 1: ``SplitStep`` runs the step's micro-batches as two parts and reads the squared norm of
  each part's gradient; B_small = the harmonic mean of the parts' batches (``gns_mode`` says when
  this is possible).
- |G_big|^2 = (the optimizer's grad norm)^2: fully reduced, each parameter counted once, loss scale
  removed, correct with the distributed optimizer (which leaves only a shard of the gradient reduced).
- Squared norms count each parameter once (not a TP duplicate, not a shared tied copy) and are
  summed over the model-parallel group (TP x PP). With tied embeddings and PP > 1 the first stage's
  embedding gradient lacks the output layer's part until megatron all-reduces it after the DP sync;
  the wrapper keeps a local copy, which ``end_step`` all-reduces over the embedding group first.
- fp16: local gradients carry the loss scale; ``end_step`` divides |G_small|^2 by its square.
All sequences have the same length, so the batch sizes count sequences (no harmonic mean needed).
"""

from __future__ import annotations

from typing import Any, Callable

import torch
import torch.distributed as dist

from batchlaw.plugin import _mcore
from batchlaw.simulator.noise import two_batch_estimates

__all__ = ["GnsTracker", "SplitStep", "gns_mode", "two_batch_estimates"]


class GnsTracker:
    """Measures the local squared gradient norm each step and turns it into the ``gns_*`` columns.

    Usage per step: ``begin_step()``, the forward-backward (which triggers the hooks), then
    ``end_step(b_small, b_big, grad_norm, loss_scale)`` on every rank (it does collectives).

    Args:
        ddp_modules: the megatron DDP-wrapped model chunks of this rank.
        dp_group: data-parallel process group; mp_group: model-parallel (TP x PP) group;
        embedding_group: the tied-embedding group (or None when untied or PP = 1).
    """

    def __init__(self, ddp_modules, *, dp_group, mp_group, embedding_group=None):
        self.ddp_modules = list(ddp_modules)
        self.dp_group, self.mp_group, self.embedding_group = dp_group, mp_group, embedding_group
        self._local_sq = 0.0
        self._embedding_copies: list[tuple[torch.Tensor, bool]] = []
        self._remove: Any = None

    # hooks -------------------------------------------------------------------------------------
    def _split(self, params) -> tuple[list, list]:
        """(parameters counted in the local norm, tied-embedding copies to reduce first)."""
        tied = [p for p in params if self.embedding_group is not None and _mcore.is_shared_embedding(p)]
        counted = [p for p in params if _mcore.param_counts_once(p) and not any(p is t for t in tied)]
        return counted, tied

    def _account(self, counted, tied) -> None:
        """Add the local squared norm as a tensor: no host sync inside a backward hook."""
        for p in tied:
            self._embedding_copies.append((_mcore.grad_of(p).detach().clone(), _mcore.param_counts_once(p)))
        if counted:
            norms = torch._foreach_norm([_mcore.grad_of(p).detach() for p in counted])
            self._local_sq = self._local_sq + torch.stack(norms).double().square().sum()

    def install(self) -> None:
        """Read the local gradient in every bucket group's ``start_grad_sync`` (through the adapter,
        which fails loudly, naming the megatron-core version, if the bucket groups were renamed)."""
        splits: dict[int, tuple[list, list]] = {}

        def before_sync(params) -> None:
            key = id(params)
            if key not in splits:
                splits[key] = self._split(params)
            self._account(*splits[key])

        self._remove = _mcore.install_grad_sync_hooks(self.ddp_modules, before_sync)

    def remove(self) -> None:
        """Undo ``install``."""
        if self._remove is not None:
            self._remove()
            self._remove = None

    def begin_step(self) -> None:
        """Reset the per-step accumulators."""
        self._local_sq = 0.0
        self._embedding_copies = []

    def local_sq_now(self) -> float:
        """Local squared norm of the current grad buffers, counted once, reduced over TP x PP.

        Used by the DP = 1 micro-batch probe; does collectives.
        """
        self.begin_step()
        self._account(*self._split(_mcore.buffer_params(self.ddp_modules)))
        return self._reduce_local()

    def _reduce_local(self) -> float:
        local = torch.as_tensor(self._local_sq, dtype=torch.float64).reshape(1).clone()
        for copy, counted in self._embedding_copies:
            dist.all_reduce(copy, group=self.embedding_group)
            if counted:
                local += copy.double().square().sum()
        dist.all_reduce(local, group=self.mp_group)
        return float(local)

    def end_step(self, *, b_small: float, b_big: float, grad_norm: float, loss_scale: float = 1.0,
                 small_sq: float | None = None) -> dict[str, float]:
        """Reduce and return the ``gns_*`` columns and ``grad_norm`` (collective on every rank).

        ``small_sq`` overrides the hook measurement (the DP = 1 micro-batch path passes its mean).
        """
        if small_sq is None:
            local = self._reduce_local() / loss_scale**2
            mean = torch.tensor([local], dtype=torch.float64)
            dist.all_reduce(mean, group=self.dp_group)
            small_sq = float(mean) / dist.get_world_size(self.dp_group)
        big_sq = float(grad_norm) ** 2
        g2, trace = two_batch_estimates(small_sq, big_sq, b_small, b_big)
        return {"gns_b_small": float(b_small), "gns_b_big": float(b_big), "gns_small_sq": small_sq,
                "gns_big_sq": big_sq, "gns_g2": g2, "gns_trace": trace, "grad_norm": float(grad_norm)}


def gns_mode(*, measuring: bool, dp_size: int, pp_size: int, num_chunks: int, tied_and_pp: bool,
             num_micro_batches: int) -> str:
    """How this step measures the noise scale: 'hooks' (DP >= 2: the DP ranks' local gradients),
    'split' (DP = 1, >= 2 micro-batches: ``SplitStep``) or 'none' (no second batch size)."""
    if not measuring:
        return "none"
    if dp_size > 1:
        return "hooks"
    if num_micro_batches < 2 or tied_and_pp:
        return "none"  # tied embeddings at PP > 1: local_sq_now would count the reduced copy twice
    first, second = num_micro_batches // 2, num_micro_batches - num_micro_batches // 2
    if num_chunks > 1 and (first % pp_size or second % pp_size):
        return "none"  # interleaved 1F1B needs each part's micro-batches to be a multiple of PP
    return "split"


class SplitStep:
    """DP = 1: the noise scale's small batch is a part of this rank's micro-batches.

    The step's n micro-batches run as two parts of m = n // 2 and n - m, and each part's squared
    gradient norm is read. The schedule divides every micro-batch loss by n, so a part's mean
    gradient is (n / m) times its share of the buffer. E|g_b|^2 = |G|^2 + tr(Sigma) / b (McCandlish
    et al. 2018, eq. A.1), so the mean of the two squared norms is unbiased for b_small = the
    harmonic mean of the parts. PP = 1: one schedule call, split between micro-batches by
    ``before_micro_batch`` (which the trainer's forward step calls); PP > 1: one call per part (1F1B
    interleaves the parts' backward passes), the parts' buffers summed afterwards.

    Args:
        tracker: the rank's ``GnsTracker`` (reads the squared norms, reduced over TP x PP).
        models: the DDP-wrapped model chunks.
        pp_size: pipeline-parallel size; micro_batch: sequences per micro-batch.
    """

    def __init__(self, tracker: GnsTracker, models, *, pp_size: int, micro_batch: int):
        self.tracker, self.models, self.pp_size, self.micro_batch = tracker, list(models), pp_size, micro_batch
        self._split_at, self._index, self._half_sq = 0, 0, float("nan")
        self._kept: list[torch.Tensor] = []

    def before_micro_batch(self) -> None:
        """Called before each micro-batch's forward: between the two parts (PP = 1), measure the first
        part's gradient, set it aside, and let the second part accumulate into zeroed buffers."""
        if self._split_at and self._index == self._split_at:
            self._half_sq = self.tracker.local_sq_now()
            buffers = _mcore.grad_buffers(self.models)
            if not self._kept:
                self._kept = [torch.empty_like(b) for b in buffers]
            for kept, buf in zip(self._kept, buffers):
                kept.copy_(buf)
                buf.zero_()
        self._index += 1

    def run(self, mbs: list, schedule: Callable[[list], list]) -> tuple[list, float, float]:
        """Run ``schedule`` over ``mbs`` in two parts; returns (losses, |G_small|^2 with the loss scale
        still in it, b_small in sequences)."""
        n, m, mb = len(mbs), len(mbs) // 2, self.micro_batch
        self._index = 0
        if self.pp_size == 1:
            self._split_at = m
            try:
                losses = schedule(mbs)
            finally:
                self._split_at = 0
            first, second = self._half_sq * (n / m) ** 2, self.tracker.local_sq_now() * (n / (n - m)) ** 2
            for kept, buf in zip(self._kept, _mcore.grad_buffers(self.models)):
                buf.add_(kept)
        else:
            losses = schedule(mbs[:m])
            first = self.tracker.local_sq_now()
            kept = [b.mul(m / n) for b in _mcore.grad_buffers(self.models)]
            _mcore.zero_grad_buffers(self.models)
            losses += schedule(mbs[m:])
            second = self.tracker.local_sq_now()
            for k, buf in zip(kept, _mcore.grad_buffers(self.models)):
                buf.mul_((n - m) / n).add_(k)
        return losses, 0.5 * (first + second), 2.0 / (1.0 / (m * mb) + 1.0 / ((n - m) * mb))
