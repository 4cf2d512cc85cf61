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


def test_empty_input_is_refused_and_empty_files_make_no_document(tmp_path, capsys):
    """Issue 21: an empty input built a 1-token dataset (a lone end-of-document token)."""
    empty, text = tmp_path / "empty.txt", tmp_path / "a.txt"
    empty.write_text("")
    text.write_text("hello world\n")
    out = tmp_path / "ds" / "corpus"
    assert main(["data", "build", "--input", str(empty), str(empty), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "all 2 files are empty; nothing to build" in err and "\n" not in err and not (tmp_path / "ds").exists()
    assert main(["data", "build", "--input", str(empty), str(text), "--out", str(out)]) == 0
    said = capsys.readouterr().out
    assert "1 documents, 13 tokens from 2 files; skipped 1 empty files" in said, said


def test_an_existing_dataset_is_replaced_only_with_force(tmp_path, capsys):
    """Issue 21: a second build to the same prefix replaced the first without notice."""
    text = tmp_path / "a.txt"
    text.write_text("hello world\n")
    out = str(tmp_path / "corpus")
    assert main(["data", "build", "--input", str(text), "--out", out]) == 0
    before = (tmp_path / "corpus.bin").read_bytes()
    text.write_text("something else entirely\n")
    capsys.readouterr()
    assert main(["data", "build", "--input", str(text), "--out", out]) == 2
    err = capsys.readouterr().err.strip()
    assert f"{out}.bin exists; --force replaces it" in err and "\n" not in err
    assert (tmp_path / "corpus.bin").read_bytes() == before
    assert main(["data", "build", "--input", str(text), "--out", out, "--force"]) == 0
    assert "replaced the existing" in capsys.readouterr().out and (tmp_path / "corpus.bin").read_bytes() != before


def test_text_that_is_not_utf8_is_refused_unless_replacement_is_asked_for(tmp_path):
    """Issue 21: a tokenizers-JSON build decoded invalid UTF-8 with U+FFFD silently. The byte tokenizer
    reads bytes and never decodes. ``tokenizers`` itself is not needed to test the decoding step."""
    import pytest

    from batchlaw.tools.data_cmd import _HFTokenizer
    from batchlaw.tools.indexed_data import tokenize_files

    class Encoded:
        def __init__(self, text):
            self.ids = [ord(c) for c in text]

    class Stub:
        def encode(self, text):
            return Encoded(text)

    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("caf\u00e9\n".encode("latin-1"))
    tok = _HFTokenizer.__new__(_HFTokenizer)
    tok._tok, tok.eod, tok.replace_invalid, tok.replaced = Stub(), 0, False, 0
    with pytest.raises(ValueError, match=r"latin1.txt': not UTF-8 at byte 3 .*--replace-invalid-utf8"):
        list(tokenize_files([latin1], tok))
    tok.replace_invalid = True
    (doc,) = tokenize_files([latin1], tok)
    assert doc.tolist() == [99, 97, 102, 0xFFFD, 10, 0] and tok.replaced == 1
