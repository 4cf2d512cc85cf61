"""Tier (a), pure (h5py, no torch): ``plugin.prelaunch.check_prelaunch`` refuses, before anything starts, a launch that
would start a completed run's log over, and TensorBoard logging without TensorBoard (session-5 audit: the log
was silently overwritten; the rank died with a traceback after the log was created)."""

import importlib.util

import pytest

from batchlaw.plugin.h5log import RunLogWriter
from batchlaw.plugin.prelaunch import check_prelaunch
from batchlaw.simulator.runconfig import load_run_config


def _log(path, status):
    w = RunLogWriter(path, attrs={"config": {}}, flush_every=1)
    w.append({"step": 1, "loss": 1.0})
    w.close(status)


def test_a_completed_log_is_not_started_over(tmp_path):
    log = tmp_path / "log.h5"
    _log(log, "completed")
    cfg = load_run_config("tiny-cpu", [f"log.path={log}", "checkpoint.dir="])
    with pytest.raises(ValueError, match="^log.path = .*holds a completed run and this launch has no checkpoint"):
        check_prelaunch(cfg, on_cpu=True)
    ckpt = tmp_path / "ckpt" / "step_00000001"
    ckpt.mkdir(parents=True)
    (ckpt / "meta.json").write_text('{"step": 1, "layout": {}}')
    check_prelaunch(load_run_config("tiny-cpu", [f"log.path={log}", f"checkpoint.dir={tmp_path / 'ckpt'}"]),
                    on_cpu=True)  # it resumes (and finds nothing left to do)
    _log(tmp_path / "crashed.h5", "failed")  # a failed or interrupted run before its first checkpoint: start over
    check_prelaunch(load_run_config("tiny-cpu", [f"log.path={tmp_path / 'crashed.h5'}", "checkpoint.dir="]),
                    on_cpu=True)


def test_tensorboard_logging_names_the_install(tmp_path, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tensorboard" else real(name, *a))
    cfg = load_run_config("tiny-cpu", [f"log.tensorboard={tmp_path / 'tb'}", f"log.path={tmp_path / 'log.h5'}"])
    with pytest.raises(ValueError, match="^log.tensorboard = .*needs TensorBoard: pip install tensorboard"):
        check_prelaunch(cfg, on_cpu=True)


def test_sequence_parallel_on_cpu_is_refused_once_with_the_install(tmp_path):
    cfg = load_run_config("tiny-cpu", ["parallel.tp=2", "parallel.sequence_parallel=true", "checkpoint.dir="])
    with pytest.raises(ValueError, match=r"^parallel.sequence_parallel = True: needs .*pip install transformer-engine"):
        check_prelaunch(cfg, on_cpu=True)
    check_prelaunch(cfg, on_cpu=False)  # on a GPU the layer spec decides


@pytest.mark.parametrize("present", [(), (".idx",), (".bin",)])
def test_an_incomplete_indexed_dataset_says_how_to_proceed(tmp_path, present):
    # issue 20: submit checked only PREFIX.idx, the trainer both files; one check now, with the ways on
    for suffix in present:
        (tmp_path / f"corpus{suffix}").write_bytes(b"x")
    cfg = load_run_config("tiny-cpu", ["data.kind=indexed", f"data.path={tmp_path / 'corpus'}", "checkpoint.dir="])
    with pytest.raises(ValueError) as err:
        check_prelaunch(cfg, on_cpu=True)
    text = str(err.value)
    assert "\n" not in text and text.startswith("data.path = ") and "is missing" in text
    for way in ("batchlaw data build", "--set data.path=PREFIX", "--set data.kind=synthetic"):
        assert way in text
