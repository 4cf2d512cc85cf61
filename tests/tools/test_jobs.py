"""Tier (a), pure (plain Python subprocesses, no torch): ``tools.jobs.run_jobs``, the one subprocess pool of
``batchlaw demo`` and ``batchlaw probe-cbs``: completed folders are skipped, each job's output lands in
its folder, and the first failure stops the jobs still running and raises one line naming the folder."""

import os
import sys

import pytest

from batchlaw.tools.jobs import run_jobs


def _script(code):
    return lambda d: [sys.executable, "-c", code, str(d)]


def test_runs_pending_folders_and_skips_completed(tmp_path):
    folders = [tmp_path / f"r{i}" for i in range(4)]
    for d in folders:
        d.mkdir()
    (folders[1] / "COMPLETED").touch()
    calls = []
    run_jobs(folders, _script("import sys, pathlib; print('ran', pathlib.Path(sys.argv[1]).name)"), jobs=2,
             progress=lambda done, total, text: calls.append((done, total)))
    assert [(d / "train.out").read_text() if (d / "train.out").exists() else None for d in folders] == [
        "ran r0\n", None, "ran r2\n", "ran r3\n"]
    assert calls[0] == (1, 4) and sorted(calls[1:]) == [(2, 4), (3, 4), (4, 4)]


def test_first_failure_stops_the_others_and_names_the_folder(tmp_path):
    sleeper, failer = tmp_path / "sleeper", tmp_path / "failer"
    for d in (sleeper, failer):
        d.mkdir()
    code = {sleeper: "import os, time; open('pid.tmp', 'w').write(str(os.getpid())); os.replace('pid.tmp', 'pid');"
                     " time.sleep(600)",
            failer: "import os, sys, time\nwhile not os.path.exists('pid'): time.sleep(0.05)\nsys.exit(3)"}
    command = lambda d: [sys.executable, "-c", f"import os; os.chdir({str(tmp_path)!r})\n" + code[d]]
    with pytest.raises(ValueError) as info:
        run_jobs([sleeper, failer], command, jobs=2, progress=lambda *a: None)
    assert str(info.value) == f"training {failer} failed (exit 3); see {failer / 'train.out'}"
    pid = int((tmp_path / "pid").read_text())
    with pytest.raises(ProcessLookupError):  # terminated and reaped, not left running
        os.kill(pid, 0)
