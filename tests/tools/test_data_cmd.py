"""Tier (a), pure (numpy, no torch): ``batchlaw data build`` writes a complete .bin/.idx pair or nothing, and
refuses a prefix or tokenizer it cannot use with one line (session-5 audit: a file as the prefix's folder gave
a FileExistsError traceback, a trailing slash wrote hidden files, and SIGTERM left PREFIX.bin.tmp behind)."""

import signal
import subprocess
import sys
import time

from batchlaw.tools.cli import main


def test_build_and_refusals(tmp_path, capsys):
    text = tmp_path / "a.txt"
    text.write_text("hello world\n")
    assert main(["data", "build", "--input", str(text), "--out", str(tmp_path / "ds" / "corpus")]) == 0
    assert sorted(p.name for p in (tmp_path / "ds").iterdir()) == ["corpus.bin", "corpus.idx"]
    for out, message in ((str(text / "x"), "is a file, not a folder"), (str(tmp_path / "d") + "/", "a path prefix"),
                         ("", "a path prefix")):
        assert main(["data", "build", "--input", str(text), "--out", out]) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and "\n" not in err, err
    assert not (tmp_path / "d").exists()


def test_sigterm_leaves_no_temporary_files(tmp_path):
    big = tmp_path / "big.txt"
    big.write_bytes(b"x " * 20_000_000)
    proc = subprocess.Popen([sys.executable, "-m", "batchlaw.tools", "data", "build", "--input", *[str(big)] * 6,
                             "--out", str(tmp_path / "out" / "big")], stderr=subprocess.PIPE)
    deadline = time.time() + 60
    while not list((tmp_path / "out").glob("*.tmp")) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)
    assert not list((tmp_path / "out").glob("*")), list((tmp_path / "out").glob("*"))  # all or nothing



def test_an_end_of_document_id_beyond_16_bits_is_kept(tmp_path):
    """Review of session 5: np.uint16(eod) overflowed for vocabularies past 65,535 (Qwen: 151,643)."""
    import numpy as np

    from batchlaw.tools.indexed_data import tokenize_files

    class Big:
        eod = 151_643

        def encode(self, data):
            return np.array([70_000, 5], dtype=np.int64)

    (tmp_path / "a.txt").write_text("x")
    (doc,) = tokenize_files([tmp_path / "a.txt"], Big())
    assert doc.tolist() == [70_000, 5, 151_643]
