"""Driver of test_checkpoint_damage.py: damage each file of the newest checkpoint in turn, resume.

Imports torch and megatron-core once, then forks the two ranks of each launch (gloo, world size 2,
``batchlaw.plugin.train.main``), so a launch costs about a second instead of a torchrun start.

1. ``reference``: an uninterrupted run of ``STEPS`` steps.
2. ``base``: the same run stopped after 6 steps (``train.exit_after_steps``), with checkpoints at
   steps 4 and 6 (``checkpoint.every = 2``, ``keep = 2``).
3. For every file of ``base/ckpt/step_00000006`` and every damage (truncated to half its size,
   truncated to 0 bytes, deleted, one byte changed), a copy of ``base`` with that damage is resumed
   to the end; plus one copy with every checkpoint's ``meta.json`` deleted.

Writes ``result.json``: per case the exit statuses, the ranks' stderr, the logged steps and losses.

    python tests/plugin/damagedriver.py WORKDIR STEPS -- RUN.toml --set k=v ...
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path


def _launch(workdir: Path, args: list[str], port: int) -> tuple[list[int], str]:
    """Both ranks of one launch in ``workdir``; returns their exit statuses and their stderr."""
    pids = []
    for rank in range(2):
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                os.chdir(workdir)
                err = os.open(f"rank{rank}.err", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
                os.dup2(err, 2)
                os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", LOCAL_WORLD_SIZE="2",
                                  MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
                from batchlaw.plugin.train import main

                code = main(args)
            finally:
                os._exit(code)
        pids.append(pid)
    codes = [os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) for pid in pids]
    return codes, "".join((workdir / f"rank{r}.err").read_text() for r in range(2))


def _log(workdir: Path) -> dict:
    import h5py

    path = workdir / "log.h5"
    if not path.exists():
        return {}
    with h5py.File(path, "r", locking=False, swmr=True) as f:
        return {"steps": [int(s) for s in f["steps/step"][:]], "loss": [float(x) for x in f["steps/loss"][:]],
                "status": str(f.attrs.get("status", ""))}


def _damage(path: Path, how: str) -> None:
    if how == "delete":
        path.unlink()
    elif how == "flip":
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0xFF
        path.write_bytes(bytes(data))
    else:
        with open(path, "r+b") as f:
            f.truncate(0 if how == "empty" else path.stat().st_size // 2)


def main() -> None:
    workdir, steps = Path(sys.argv[1]), int(sys.argv[2])
    args = sys.argv[sys.argv.index("--") + 1:] + ["--set", f"train.steps={steps}"]
    from batchlaw.plugin.cpu import apply_cpu_patches
    from batchlaw.plugin.launch import free_port

    apply_cpu_patches()
    import batchlaw.plugin.loop  # noqa: F401 - torch and megatron-core imported once, before forking

    result: dict = {}
    for name, extra in (("reference", []), ("base", ["--set", "train.exit_after_steps=6"])):
        (workdir / name).mkdir(parents=True)
        codes, err = _launch(workdir / name, args + extra, free_port())
        result[name] = {"codes": codes, "err": err, **_log(workdir / name)}
    newest = workdir / "base" / "ckpt" / "step_00000006"
    cases = [(f.name, how) for f in sorted(newest.iterdir()) for how in ("half", "empty", "delete", "flip")]
    for i, (file, how) in enumerate(cases + [("meta.json", "every")]):
        case = workdir / f"case{i}"
        shutil.copytree(workdir / "base", case)
        targets = sorted((case / "ckpt").glob(f"step_*/{file}")) if how == "every" else \
            [case / "ckpt" / newest.name / file]
        for target in targets:
            _damage(target, "delete" if how == "every" else how)
        codes, err = _launch(case, args, free_port())
        result[f"{file}:{how}"] = {"codes": codes, "err": err, "ckpt": sorted(p.name for p in (case / "ckpt").iterdir()),
                                   **_log(case)}
    (workdir / "result.json").write_text(json.dumps(result))


if __name__ == "__main__":
    main()
