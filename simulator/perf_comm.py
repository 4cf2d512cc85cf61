"""Communication by tier: NVLink domain vs network, each collective on the slowest tier it crosses.

Rank order is Megatron's default ``tp-cp-dp-pp`` (TP innermost; ``parallel_state`` order string), so a
group of size n whose members are ``stride`` ranks apart has ``n_local = clip(D / stride, 1, n)``
members in each NVLink domain of D GPUs and spans ``ceil(n / n_local)`` domains (nodes). A group inside
one domain runs at NVLink bandwidth. A group spanning domains runs NCCL's rings (or trees) with one
channel per NIC: each domain boundary is crossed by the traffic of all channels at once, so the bus
bandwidth is ``min(NVLink, n_local x NIC)`` (NCCL's hierarchical bus-bandwidth model; NCCL tests
``doc/PERFORMANCE.md``). Volumes: all-reduce ``2(n-1)/n S``, reduce-scatter and all-gather ``(n-1)/n S``
(Thakur et al. 2005; prior_art.md 2.7).

Latency follows NCCL's own tuning model (NVIDIA/nccl ``src/graph/tuning.cc``, ``ncclTopoTuneModel`` and
``ncclTopoGetAlgoTime``, Simple protocol, which NCCL picks for the megabyte messages of training):
- ring: a base latency (8.4 us; the profile's ``latency_us``) plus one hop per ring step, ``2(n-1)`` steps
  for an all-reduce and ``n-1`` for a reduce-scatter or all-gather, of which ``2(nodes-1)`` (``nodes-1``)
  cross the network: ``hop_nvlink_us`` (3.4 us) inside a domain, ``hop_net_us`` (9.6 us) across; a
  multi-node all-reduce of large messages pays 1.9 x that latency ("plateau effect of ring");
- tree (all-reduce only): ``2 ((n/nodes - 1) x 28 + log2(nodes) x 50)`` us (tree hop latencies of the
  Simple protocol), at half of 0.9 x the ring's bus bandwidth;
NCCL runs the faster of the two (``getAlgoInfo``), so a ring's latency, linear in the ranks, gives way to
the tree's logarithmic one in groups of thousands of ranks.
"""

from __future__ import annotations

import numpy as np

from batchlaw.simulator.system import SystemProfile

__all__ = ["allreduce", "bus_bandwidth", "collective", "dp_collectives", "nodes_spanned", "p2p_bandwidth",
           "ring_latency", "rs_or_ag"]

# NCCL tuning.cc (Simple protocol): tree hop latencies in us, the ring's multi-node all-reduce plateau
_TREE_HOP_NVLINK_US, _TREE_HOP_NET_US, _RING_PLATEAU, _TREE_BW = 28.0, 50.0, 1.9, 0.9 * 0.5


def _members_per_domain(n, stride, system: SystemProfile) -> np.ndarray:
    n = np.asarray(n, dtype=np.float64)
    return np.clip(np.floor(float(system.gpus_per_node) / np.asarray(stride, dtype=np.float64)), 1.0,
                   np.maximum(n, 1.0))


def nodes_spanned(n, stride, system: SystemProfile) -> np.ndarray:
    """NVLink domains a group of n ranks ``stride`` apart spans."""
    return np.ceil(np.asarray(n, dtype=np.float64) / _members_per_domain(n, stride, system))


def _bus(n, n_local, stride, system: SystemProfile) -> np.ndarray:
    inside = n * stride <= float(system.gpus_per_node)
    net = np.minimum(system.nvlink_gbps, n_local * system.network_gbps)
    return np.where(inside, system.nvlink_gbps, net) * (1e9 * system.efficiency.network_eff)


def bus_bandwidth(n, stride, system: SystemProfile) -> np.ndarray:
    """Achieved bus bandwidth (bytes/s) of a collective over n ranks spaced ``stride`` apart."""
    n = np.asarray(n, dtype=np.float64)
    return _bus(n, _members_per_domain(n, stride, system), stride, system)


def _ring_us(n, nodes, system: SystemProfile, allreduce: bool) -> np.ndarray:
    k = 2.0 if allreduce else 1.0
    steps, inter = k * (n - 1), k * (nodes - 1)
    us = system.latency_us + (steps - inter) * system.hop_nvlink_us + inter * system.hop_net_us
    return np.where(nodes > 1, _RING_PLATEAU * us, us) if allreduce else us


def ring_latency(n, stride, system: SystemProfile, *, allreduce: bool) -> np.ndarray:
    """Seconds of latency of one NCCL ring collective over n ranks ``stride`` apart (0 when n = 1)."""
    n = np.asarray(n, dtype=np.float64)
    return np.where(n > 1, _ring_us(n, nodes_spanned(n, stride, system), system, allreduce) * 1e-6, 0.0)


def allreduce(n, stride, nbytes, system: SystemProfile) -> np.ndarray:
    """Seconds of an all-reduce of ``nbytes`` per rank: the faster of NCCL's ring and tree (0 when n = 1)."""
    n = np.asarray(n, dtype=np.float64)
    n_local = _members_per_domain(n, stride, system)
    nodes = np.ceil(n / n_local)
    bw = _bus(n, n_local, stride, system)
    ring = 2.0 * (n - 1) / np.maximum(n, 1.0) * nbytes / bw + _ring_us(n, nodes, system, True) * 1e-6
    multi = nodes > 1
    if np.any(multi):
        tree_us = 2.0 * ((n / nodes - 1) * _TREE_HOP_NVLINK_US + np.log2(nodes) * _TREE_HOP_NET_US)
        ring = np.where(multi, np.minimum(ring, nbytes / (_TREE_BW * bw) + tree_us * 1e-6), ring)
    return np.where(n > 1, ring, 0.0)  # 0 even for inf/NaN bytes


def rs_or_ag(n, stride, nbytes, system: SystemProfile) -> np.ndarray:
    """Seconds of a reduce-scatter or all-gather whose full buffer is ``nbytes`` per rank (ring; 0 when n = 1)."""
    n = np.asarray(n, dtype=np.float64)
    n_local = _members_per_domain(n, stride, system)
    wire = (n - 1) / np.maximum(n, 1.0) * nbytes / _bus(n, n_local, stride, system)
    return np.where(n > 1, wire + _ring_us(n, np.ceil(n / n_local), system, False) * 1e-6, 0.0)


def dp_collectives(n, stride, grad_bytes, param_bytes, system: SystemProfile) -> tuple[np.ndarray, ...]:
    """(reduce-scatter of ``grad_bytes``, all-gather of ``param_bytes``, all-reduce of ``grad_bytes``) over
    the same group, its shape computed once (``rs_or_ag``, ``allreduce``)."""
    n = np.asarray(n, dtype=np.float64)
    n_local = _members_per_domain(n, stride, system)
    nodes = np.ceil(n / n_local)
    bw = _bus(n, n_local, stride, system)
    one = np.where(n > 1, (n - 1) / np.maximum(n, 1.0) / bw, 0.0)
    lat = np.where(n > 1, _ring_us(n, nodes, system, False) * 1e-6, 0.0)
    ar = 2.0 * one * grad_bytes + np.where(n > 1, _ring_us(n, nodes, system, True) * 1e-6, 0.0)
    multi = nodes > 1
    if np.any(multi):
        tree_us = 2.0 * ((n / nodes - 1) * _TREE_HOP_NVLINK_US + np.log2(nodes) * _TREE_HOP_NET_US)
        ar = np.where(multi, np.minimum(ar, grad_bytes / (_TREE_BW * bw) + tree_us * 1e-6), ar)
    return one * grad_bytes + lat, one * param_bytes + lat, np.where(n > 1, ar, 0.0)


def collective(n, stride, nbytes, system: SystemProfile, *, split: bool) -> np.ndarray:
    """Seconds of one tensor-parallel collective of ``nbytes`` activations: an all-reduce, or (``split``:
    sequence parallelism) a reduce-scatter plus an all-gather of the same total volume (Korthikanti et
    al. 2022, sec. 4.2.2), each with its own latency."""
    split = np.asarray(split, dtype=bool)
    if split.all():
        return 2.0 * rs_or_ag(n, stride, nbytes, system)
    if not split.any():
        return allreduce(n, stride, nbytes, system)
    return np.where(split, 2.0 * rs_or_ag(n, stride, nbytes, system), allreduce(n, stride, nbytes, system))


def p2p_bandwidth(stride, system: SystemProfile) -> np.ndarray:
    """Point-to-point bandwidth (bytes/s) between ranks ``stride`` apart: NVLink inside a domain, else
    the GPU's own NIC."""
    inside = np.asarray(stride) < system.gpus_per_node
    return np.where(inside, system.nvlink_gbps, system.network_gbps) * (1e9 * system.efficiency.network_eff)
