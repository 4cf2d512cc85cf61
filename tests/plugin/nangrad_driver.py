"""Driver of test_precision.py's non-finite-gradient test: one single-rank gloo trainer
(``batchlaw.plugin.train.main``, real megatron-core) whose gradients get an inf on one step.

The fault is injected after megatron's schedule has produced and reduced the gradients of step
``BAD``: one element of the first flat gradient buffer is set to inf, as a bf16/fp32 overflow in the
backward would leave it, while the loss stays finite.

    python tests/plugin/nangrad_driver.py WORKDIR BAD -- RUN.toml --set k=v ...
"""

from __future__ import annotations

import os
import sys
from pathlib import Path


def main() -> int:
    workdir, bad = Path(sys.argv[1]), int(sys.argv[2])
    args = sys.argv[sys.argv.index("--") + 1:]
    os.chdir(workdir)
    from batchlaw.plugin import _mcore
    from batchlaw.plugin.launch import free_port
    from batchlaw.plugin.train import main as train

    real = _mcore.forward_backward
    calls = {"n": 0}

    def forward_backward(**kw):
        out = real(**kw)
        if not kw.get("forward_only"):
            calls["n"] += 1
            if calls["n"] == bad:
                _mcore.grad_buffers(kw["models"])[0].view(-1)[0] = float("inf")
        return out

    _mcore.forward_backward = forward_backward
    os.environ.update(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", LOCAL_WORLD_SIZE="1",
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()))
    return train(args)


if __name__ == "__main__":
    sys.exit(main())
