"""Tier (a), pure (no torch): what made a run (``plugin/runmeta.py``).

- GPU names as torch reports them map to the shipped system profiles through
  ``simulator.system.GPU_ALIASES`` (issue 20: the trainer had its own table, in which a bare "A100"
  meant 40 GB where the aliases say 80 GB, and B200/GB200 were missing, so MFU was NaN on them).
  The names are NVIDIA's product strings as ``nvidia-smi`` / ``torch.cuda.get_device_name`` print them;
  the peaks are the profiles' (configs/systems, dense 16-bit, from NVIDIA's data sheets).
- ``git_sha`` marks a checkout with changed tracked files ``-dirty`` (issue 21: a dirty tree logged
  the bare commit, as if the code were that commit's).
"""

from __future__ import annotations

import math
import subprocess

import pytest

from batchlaw.plugin import runmeta
from batchlaw.simulator.system import load_system


@pytest.mark.parametrize("name, memory_gib, profile", [
    ("NVIDIA H100 80GB HBM3", 79.1, "h100-sxm"),
    ("NVIDIA H100 PCIe", 79.6, "h100-sxm"),
    ("NVIDIA A100-SXM4-80GB", 79.2, "a100-80gb"),
    ("NVIDIA A100-SXM4-40GB", 39.4, "a100-40gb"),
    ("NVIDIA A100-PCIE-40GB", 39.4, "a100-40gb"),
    ("NVIDIA A100 80GB PCIe", 79.2, "a100-80gb"),
    ("A100", None, "a100-80gb"),  # what GPU_ALIASES says a bare A100 is
    ("A100", 39.4, "a100-40gb"),  # ... unless the device's memory says otherwise
    ("NVIDIA H200", 139.8, "h200"),
    ("NVIDIA B200", 178.4, "b200"),
    ("NVIDIA GB200", 184.0, "gb200"),
    ("NVIDIA GeForce RTX 4090", 23.6, None),
])
def test_device_names_map_to_the_shipped_profiles(name, memory_gib, profile):
    assert runmeta.device_profile(name, memory_gib) == profile
    peak = runmeta.peak_flops(name, memory_gib)
    if profile is None:
        assert math.isnan(peak)
    else:
        assert peak == load_system(profile).peak_tflops * 1e12 and peak > 0


def test_no_gpu_has_no_peak():
    assert math.isnan(runmeta.peak_flops(None)) and math.isnan(runmeta.peak_flops(""))


def _git(repo, *args):
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True,
                   env={"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
                        "GIT_COMMITTER_EMAIL": "t@t", "PATH": "/usr/bin:/bin", "HOME": str(repo)})


def test_git_sha_marks_a_dirty_tree(tmp_path, monkeypatch):
    repo = tmp_path / "checkout"
    (repo / "plugin").mkdir(parents=True)
    _git(repo, "init", "-q")
    (repo / "plugin" / "loop.py").write_text("x = 1\n")
    _git(repo, "add", ".")
    _git(repo, "commit", "-q", "-m", "c")
    monkeypatch.setattr(runmeta, "_HERE", repo / "plugin")
    sha = runmeta.git_sha()
    assert len(sha) == 40 and not sha.endswith("-dirty")
    (repo / "plugin" / "new.py").write_text("untracked files do not count\n")
    assert runmeta.git_sha() == sha
    (repo / "plugin" / "loop.py").write_text("x = 2\n")
    assert runmeta.git_sha() == sha + "-dirty"
    monkeypatch.setattr(runmeta, "_HERE", tmp_path)  # not a checkout: a wheel
    assert runmeta.git_sha() == "unknown"
