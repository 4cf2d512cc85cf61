"""Tier (a), pure (numpy, scipy, h5py): every ``python`` block of docs/api.md runs, in order, in one
namespace, in an empty folder, without torch."""

import re
import subprocess
import sys
from pathlib import Path

DOC = Path(__file__).resolve().parents[1] / "docs" / "api.md"


def test_api_examples_run(tmp_path):
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    assert len(blocks) >= 8
    script = "\n".join(blocks) + "\nimport sys\nassert 'torch' not in sys.modules\n"
    out = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    text = out.stdout
    assert "model.name = 'gpt-13b': unknown; shipped models are" in text
    assert "train.ramp.incr = 8: not used by shape 'doubling'" in text
    assert "parallel.tpp: unknown key; valid keys are" in text
    assert "seq_len 1026 not divisible by tp 4 (sequence parallel)" in text
    assert "True 0.4" in text  # the power law's exponent is recovered
