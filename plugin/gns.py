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
- DP = 1 (PP = 1): the trainer runs the step as two halves of its micro-batches (or one micro-batch
  at a time when their number is odd) and reads the squared norm of each part's gradient;
  B_small = the part's batch.
- |G_big|^2 = (the optimizer's grad norm)^2: fully reduced, each parameter counted once, loss scale
  removed, correct with the distributed optimizer (which leaves only a shard of main_grad reduced).
- Squared norms count each parameter once (not a TP duplicate, not a shared tied copy) and are
  summed over the model-parallel group (TP x PP). With tied embeddings and PP > 1 the first stage's
  embedding gradient lacks the output layer's part until megatron all-reduces it after the DP sync;
  the wrapper keeps a local copy, which ``end_step`` all-reduces over the embedding group first.
- fp16: local gradients carry the loss scale; ``end_step`` divides |G_small|^2 by its square.
All sequences have the same length, so the batch sizes count sequences (no harmonic mean needed).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist

from batchlaw.plugin import _mcore
from batchlaw.simulator.noise import two_batch_estimates

__all__ = ["GnsTracker", "two_batch_estimates"]


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
        tied = [p for p in params if self.embedding_group is not None and getattr(p, "shared_embedding", False)]
        counted = [p for p in params if _mcore.param_counts_once(p) and not any(p is t for t in tied)]
        return counted, tied

    def _account(self, counted, tied) -> None:
        """Add the local squared norm as a tensor: no host sync inside a backward hook."""
        for p in tied:
            self._embedding_copies.append((p.main_grad.detach().clone(), _mcore.param_counts_once(p)))
        if counted:
            norms = torch._foreach_norm([p.main_grad.detach() for p in counted])
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
