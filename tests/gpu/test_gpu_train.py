"""Tier (c), GPU: bf16 training on CUDA under torchrun; fixed seed gives bit-identical losses twice
(the check to run before and after a refactor). Skipped without CUDA."""

import pytest

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.gpu

if not torch.cuda.is_available():
    pytest.skip("needs a CUDA GPU", allow_module_level=True)

from ..plugin.conftest import read_log, torchrun  # noqa: E402


def test_bf16_fixed_seed_bit_identical(tmp_path):
    sets = ("train.steps=20", "log.path=log.h5", "checkpoint.dir=", "train.precision=bf16")
    torchrun(1, tmp_path / "a", *sets)
    torchrun(1, tmp_path / "b", *sets)
    a, b = read_log(tmp_path / "a" / "log.h5"), read_log(tmp_path / "b" / "log.h5")
    assert (a["loss"] == b["loss"]).all() and a["loss"][-1] < a["loss"][0]
