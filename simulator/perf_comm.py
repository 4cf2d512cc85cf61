"""Communication by tier: NVLink domain vs network, each collective on the slowest tier it crosses.

Rank order is Megatron's default ``tp-cp-dp-pp`` (TP innermost; ``parallel_state`` order string), so a
group of size n whose members are ``stride`` ranks apart has ``n_local = clip(D / stride, 1, n)``
members in each NVLink domain of D GPUs. A group inside one domain runs at NVLink bandwidth. A group
spanning domains runs NCCL's rings (or trees) with one channel per NIC: each domain boundary is crossed
by the traffic of all channels at once, so the bus bandwidth is ``min(NVLink, n_local x NIC)``
(NCCL's hierarchical bus-bandwidth model; NCCL tests ``doc/PERFORMANCE.md``). Ring volumes: all-reduce
``2(n-1)/n S``, reduce-scatter and all-gather ``(n-1)/n S`` (Thakur et al. 2005; prior_art.md 2.7),
latency ``2 log2(n) alpha`` (tree/hierarchical startup).
"""

from __future__ import annotations

import numpy as np

from batchlaw.simulator.system import SystemProfile

__all__ = ["bus_bandwidth", "collective", "p2p_bandwidth", "ring_terms"]


def bus_bandwidth(n, stride, system: SystemProfile) -> np.ndarray:
    """Achieved bus bandwidth (bytes/s) of a collective over n ranks spaced ``stride`` apart."""
    domain = float(system.gpus_per_node)
    n = np.asarray(n, dtype=np.float64)
    n_local = np.clip(np.floor(domain / stride), 1.0, np.maximum(n, 1.0))
    inside = n * stride <= domain
    net = np.minimum(system.nvlink_gbps, n_local * system.network_gbps)
    return np.where(inside, system.nvlink_gbps, net) * (1e9 * system.efficiency.network_eff)


def ring_terms(n, bw, system: SystemProfile) -> tuple[np.ndarray, np.ndarray]:
    """(seconds per byte of a ring collective's payload, its latency) over n ranks, both 0 when n = 1:
    a collective of factor x S bytes takes ``factor (n-1)/n S / bw + 2 log2(n) alpha``."""
    n = np.asarray(n, dtype=np.float64)
    per_byte = np.where(n > 1, (n - 1) / np.maximum(n, 1.0) / bw, 0.0)
    lat = np.where(n > 1, system.latency_us * 1e-6 * 2.0 * np.log2(np.maximum(n, 1.0)), 0.0)
    return per_byte, lat


def collective(n, nbytes, bw, system: SystemProfile, factor) -> np.ndarray:
    """Seconds of a ring collective moving ``factor (n-1)/n nbytes`` per rank (0 when n = 1)."""
    per_byte, lat = ring_terms(n, bw, system)
    return np.where(np.asarray(n) > 1, factor * per_byte * nbytes + lat, 0.0)  # 0 even for inf/NaN bytes


def p2p_bandwidth(stride, system: SystemProfile) -> np.ndarray:
    """Point-to-point bandwidth (bytes/s) between ranks ``stride`` apart: NVLink inside a domain, else
    the GPU's own NIC."""
    inside = np.asarray(stride) < system.gpus_per_node
    return np.where(inside, system.nvlink_gbps, system.network_gbps) * (1e9 * system.efficiency.network_eff)
