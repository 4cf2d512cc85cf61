"""Tier (a), pure (h5py, no torch): the HDF5 run log writer (SWMR: readable while written).

A process killed with SIGKILL leaves a file readable up to the last flush; on resume rows past
the restored step are dropped, so each step appears once; events are truncated alike.
"""

import json
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest

from batchlaw.plugin import logschema
from batchlaw.plugin.h5log import RunLogWriter


def _row(step):
    return {"step": step, "loss": 10.0 / step, "global_batch_size": 8, "consumed_samples": 8 * step}


def test_sigkill_leaves_readable_file_up_to_last_flush(tmp_path):
    path = tmp_path / "log.h5"
    code = f"""
import os, signal
from batchlaw.plugin.h5log import RunLogWriter
w = RunLogWriter({str(path)!r}, attrs={{"config": {{"a": 1}}}}, flush_every=4)
for s in range(1, 11):
    w.append({{"step": s, "loss": 1.0 / s}})
os.kill(os.getpid(), signal.SIGKILL)
"""
    proc = subprocess.run([sys.executable, "-c", code])
    assert proc.returncode == -9
    with h5py.File(path, "r", locking=False, swmr=True) as f:
        assert list(f["steps/step"][:]) == list(range(1, 9))  # flushed at 4 and 8; 9, 10 lost
        assert f.attrs["status"] == "running"
        assert json.loads(f.attrs["config"]) == {"a": 1}
        assert f.attrs["schema_version"] == logschema.SCHEMA_VERSION


def test_resume_truncates_rows_past_restored_step(tmp_path):
    path = tmp_path / "log.h5"
    w = RunLogWriter(path, attrs={"config": {"x": 1}}, flush_every=2)
    for s in range(1, 7):
        w.append(_row(s))
        if s in (2, 5):
            w.event("eval", {"step": s, "val_loss": 1.0 / s})
    w.close("interrupted")
    w = RunLogWriter(path, attrs={"config": {"x": 2}}, flush_every=2, resume_step=4)
    for s in range(5, 9):
        w.append(_row(s))
    w.close()
    with h5py.File(path, "r", locking=False, swmr=True) as f:
        assert list(f["steps/step"][:]) == list(range(1, 9))
        np.testing.assert_allclose(f["steps/loss"][:], 10.0 / np.arange(1, 9))
        assert list(f["events/eval/step"][:]) == [2]
        assert f.attrs["restart_count"] == 1 and f.attrs["status"] == "completed"
        # the log records what each stretch of rows ran: the latest launch's config, the earlier one until step 4
        assert json.loads(f.attrs["config"]) == {"x": 2}
        assert json.loads(f.attrs["config_history"]) == [{"until_step": 4, "config": {"x": 1}}]
        assert f["steps/step"].chunks == (logschema.CHUNK_ROWS,) and f["steps/step"].maxshape == (None,)


def test_new_run_refuses_existing_file_and_columns_stay_aligned(tmp_path):
    path = tmp_path / "log.h5"
    w = RunLogWriter(path, flush_every=1)
    w.append({"step": 1, "loss": 1.0})
    w.append({"step": 2, "loss": 0.5, "mfu": 0.4})  # a column that appears later
    w.close()
    with h5py.File(path, "r", locking=False, swmr=True) as f:
        assert f["steps/mfu"].shape == (2,) and np.isnan(f["steps/mfu"][0])
    with pytest.raises(ValueError, match="file exists; resume the run or remove it"):
        RunLogWriter(path)
    from batchlaw.simulator.runconfig import LogConfig

    with pytest.raises(ValueError, match="log.flush_every = 0"):  # checked where the config is read
        LogConfig(flush_every=0)


def test_readable_while_written_and_resumable_after_sigkill(tmp_path):
    """A SWMR reader (the contract of batchlaw's readers) sees rows while the writer runs; after the
    writer is killed the file stays readable, and a resume rewrites it truncated to the checkpoint."""
    path = tmp_path / "live.h5"
    code = f"""
import sys, time
from batchlaw.plugin.h5log import RunLogWriter
w = RunLogWriter({str(path)!r}, attrs={{"config": {{"a": 1}}}}, flush_every=1)
for s in range(1, 100000):
    w.append({{"step": s, "loss": 1.0 / s}})
    if s == 5:
        print("ready", flush=True)
    time.sleep(0.002)
"""
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        with h5py.File(path, "r", locking=False, swmr=True) as f:
            steps = f["steps/step"]
            first = steps.shape[0]
            assert first >= 5 and list(steps[:5]) == [1, 2, 3, 4, 5]
            deadline = time.time() + 30
            while steps.shape[0] <= first + 5:
                assert time.time() < deadline, "the reader never saw new rows"
                time.sleep(0.01)
                steps.refresh()
            assert f.attrs["status"] == "running"
    finally:
        proc.kill()
        proc.wait()
    with h5py.File(path, "r", locking=False, swmr=True) as f:
        n = f["steps/step"].shape[0]
        assert list(f["steps/step"][:]) == list(range(1, n + 1))
    w = RunLogWriter(path, flush_every=1, resume_step=7)
    w.append({"step": 8, "loss": 0.125})
    w.close()
    with h5py.File(path, "r") as f:  # closed cleanly: any reader opens it
        assert list(f["steps/step"][:]) == list(range(1, 9)) and f.attrs["restart_count"] == 1
        assert json.loads(f.attrs["config"]) == {"a": 1} and f.attrs["status"] == "completed"


def test_names_outside_the_schema_are_refused(tmp_path):
    w = RunLogWriter(tmp_path / "s.h5", flush_every=1)
    with pytest.raises(ValueError, match="column 'bogus' is not in plugin/logschema.py"):
        w.append({"step": 1, "bogus": 1.0})
    w.close()


def test_config_history_after_a_resume_from_an_older_checkpoint(tmp_path):
    """Review of session 5: a second resume from an earlier step left a history entry past the cut rows."""
    path = tmp_path / "log.h5"
    for lr, resume, steps in ((1, None, range(1, 6)), (2, 3, range(4, 6)), (3, 2, range(3, 4))):
        w = RunLogWriter(path, attrs={"config": {"lr": lr}}, flush_every=1, resume_step=resume)
        for s in steps:
            w.append(_row(s))
        w.close("interrupted")
    with h5py.File(path, "r", locking=False, swmr=True) as f:
        assert json.loads(f.attrs["config"]) == {"lr": 3} and list(f["steps/step"][:]) == [1, 2, 3]
        assert json.loads(f.attrs["config_history"]) == [{"until_step": 2, "config": {"lr": 1}}]
