"""Patches that let megatron-core train on a CPU-only torch build under gloo.

Applied explicitly by the rank entry point when CUDA is unavailable (never at import time):
``torch.cuda.current_device`` -> "cpu", ``synchronize``/streams -> no-ops, and a TorchFunctionMode
that maps ``device="cuda"`` or a bare device index to the CPU and makes ``Tensor.cuda`` the
identity. ``Tensor.type()`` reports ``torch.cuda.*`` because megatron's gradient clipping asserts
CUDA tensor types. Learned from shared/reference/mcore_cpu (verified with megatron-core 0.16.1).
"""

from __future__ import annotations

import sys
import types

import torch
from torch.overrides import TorchFunctionMode

__all__ = ["apply_cpu_patches"]


def _cpu(dev):
    if isinstance(dev, torch.device):
        return torch.device("cpu") if dev.type == "cuda" else dev
    if isinstance(dev, str):
        return "cpu" if dev.startswith("cuda") else dev
    if isinstance(dev, int) and not isinstance(dev, bool):
        return "cpu"
    return dev


class _CudaToCpu(TorchFunctionMode):
    def __torch_function__(self, func, types_, args=(), kwargs=None):
        kwargs = kwargs or {}
        if "device" in kwargs:
            kwargs["device"] = _cpu(kwargs["device"])
        if func is torch.Tensor.cuda:
            return args[0]
        if func is torch.Tensor.type and len(args) == 1 and not kwargs:
            t = func(*args)
            return t if t.startswith("torch.cuda.") else t.replace("torch.", "torch.cuda.", 1)
        if func is torch.Tensor.to and len(args) > 1 and isinstance(args[1], (str, int, torch.device)):
            args = (args[0], _cpu(args[1])) + tuple(args[2:])
        return func(*args, **kwargs)


class _NoStream:
    def __getattr__(self, name):
        return lambda *a, **k: None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _stub_triton_only_modules() -> None:
    """megatron-core >= 0.19 imports a triton-only module from the schedules; CPU wheels lack triton."""
    try:
        import triton  # noqa: F401
    except ImportError:
        name = "megatron.core.transformer.moe.ops.paged_stash"
        mod = types.ModuleType(name)
        mod.GLOBAL_BLOCK_SIZE = 1024

        def _no_triton(*a, **k):
            raise RuntimeError("paged_stash kernels need triton and CUDA")

        mod.paged_stash_copy_kernel = mod.paged_stash_pop_kernel = _no_triton
        sys.modules.setdefault(name, mod)


def apply_cpu_patches() -> bool:
    """Apply the patches once per process; returns True if they were applied now."""
    if getattr(torch.cuda, "_batchlaw_cpu_patched", False):
        return False
    _stub_triton_only_modules()
    torch.cuda.current_device = lambda: "cpu"
    torch.cuda.synchronize = lambda *a, **k: None
    torch.cuda.current_stream = lambda *a, **k: _NoStream()
    torch.cuda.default_stream = lambda *a, **k: _NoStream()
    _CudaToCpu().__enter__()  # stays on the mode stack for the life of the process
    torch.cuda._batchlaw_cpu_patched = True
    return True
