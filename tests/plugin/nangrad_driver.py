"""Driver of test_precision.py's non-finite-gradient tests: one single-rank gloo trainer
(``batchlaw.plugin.train.main``, real megatron-core) whose gradients get an inf on chosen steps.

The fault is injected after megatron's schedule has produced and reduced the gradients of a step:
one element of the first flat gradient buffer is set to inf, as an overflow in the backward would
leave it, while the loss stays finite. After every optimizer step the driver appends a CRC-32 of all
model parameters to ``params.txt`` (one line per step), so a test can tell whether a step changed
the weights.

    python tests/plugin/nangrad_driver.py WORKDIR STEPS -- RUN.toml --set k=v ...

STEPS: the steps to poison, e.g. ``3`` or ``3,4`` or ``3-`` (step 3 and every later one).
"""

from __future__ import annotations

import os
import sys
import zlib
from pathlib import Path


def _poisoned(spec: str):
    if spec.endswith("-"):
        first = int(spec[:-1])
        return lambda n: n >= first
    chosen = {int(x) for x in spec.split(",")}
    return lambda n: n in chosen


def main() -> int:
    workdir, poisoned = Path(sys.argv[1]), _poisoned(sys.argv[2])
    args = sys.argv[sys.argv.index("--") + 1:]
    os.chdir(workdir)
    from batchlaw.plugin import _mcore
    from batchlaw.plugin.launch import free_port
    from batchlaw.plugin.loop import Trainer
    from batchlaw.plugin.train import main as train

    real_fb, real_step = _mcore.forward_backward, Trainer.train_step
    calls = {"n": 0}

    def forward_backward(**kw):
        out = real_fb(**kw)
        if not kw.get("forward_only"):
            calls["n"] += 1
            if poisoned(calls["n"]):
                _mcore.grad_buffers(kw["models"])[0].view(-1)[0] = float("inf")
        return out

    def train_step(self):
        row = real_step(self)
        crc = 0
        for p in _mcore.unwrapped_params(self.models):
            crc = zlib.crc32(p.detach().float().cpu().numpy().tobytes(), crc)
        with open(workdir / "params.txt", "a") as f:
            f.write(f"{row['step']} {crc:08x}\n")
        return row

    _mcore.forward_backward, Trainer.train_step = forward_backward, train_step
    os.environ.update(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", LOCAL_WORLD_SIZE="1",
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()))
    return train(args)


if __name__ == "__main__":
    sys.exit(main())
