"""Write Megatron indexed datasets (``PREFIX.bin`` / ``PREFIX.idx``) with numpy only.

The ``.idx`` layout follows megatron.core.datasets.indexed_dataset (``_IndexWriter``): the magic
``MMIDIDX\\x00\\x00``, version 1 (<Q), the dtype code (<B), the sequence count (<Q), the document count
(<Q), then sequence lengths (int32), sequence pointers in bytes (int64) and document indices (int64).
megatron-core's own ``IndexedDataset`` reads the files (tests/plugin/test_data.py checks it).
"""

from __future__ import annotations

import os
import struct
import sysconfig
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

__all__ = ["ByteTokenizer", "demo_corpus_files", "write_indexed_dataset"]

_MAGIC = b"MMIDIDX\x00\x00"
_DTYPE_CODES = {np.uint8: 1, np.int8: 2, np.int16: 3, np.int32: 4, np.int64: 5, np.float64: 6,
                np.float32: 7, np.uint16: 8}


class ByteTokenizer:
    """Bytes 0-255 are tokens 0-255; 256 is end-of-document, 257 padding; vocab padded to 384."""

    vocab_size = 384
    eod = 256
    pad = 257

    def encode(self, text: bytes | str) -> np.ndarray:
        """Token ids of a byte string."""
        data = text.encode("utf-8") if isinstance(text, str) else text
        return np.frombuffer(data, dtype=np.uint8).astype(np.uint16)


def write_indexed_dataset(prefix: str | Path, documents: Iterable[np.ndarray], *,
                          dtype=np.uint16) -> tuple[int, int]:
    """Write documents (1-D token arrays) as one sequence each; returns (documents, tokens).

    Atomic: both files are written under temporary names and renamed at the end.
    """
    prefix = Path(prefix)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    # per-process temporary names: two builds to one prefix never write into each other's files
    bin_tmp, idx_tmp = Path(f"{prefix}.bin.{os.getpid()}.tmp"), Path(f"{prefix}.idx.{os.getpid()}.tmp")
    lengths: list[int] = []
    try:
        with open(bin_tmp, "wb") as fb:
            for doc in documents:
                arr = np.asarray(doc, dtype=dtype)
                if arr.size:
                    fb.write(arr.tobytes(order="C"))
                    lengths.append(int(arr.size))
        if not lengths:
            raise ValueError("data build: the input holds no tokens")
        lens = np.array(lengths, dtype=np.int32)
        pointers = np.zeros(len(lens), dtype=np.int64)
        np.cumsum(lens[:-1].astype(np.int64) * np.dtype(dtype).itemsize, out=pointers[1:])
        doc_idx = np.arange(len(lens) + 1, dtype=np.int64)
        with open(idx_tmp, "wb") as fi:
            fi.write(_MAGIC)
            fi.write(struct.pack("<Q", 1))
            fi.write(struct.pack("<B", _DTYPE_CODES[np.dtype(dtype).type]))
            fi.write(struct.pack("<Q", len(lens)))
            fi.write(struct.pack("<Q", len(doc_idx)))
            fi.write(lens.tobytes(order="C"))
            fi.write(pointers.tobytes(order="C"))
            fi.write(doc_idx.tobytes(order="C"))
        os.replace(bin_tmp, f"{prefix}.bin")
        os.replace(idx_tmp, f"{prefix}.idx")
    finally:
        for tmp in (bin_tmp, idx_tmp):
            tmp.unlink(missing_ok=True)
    return len(lengths), int(sum(lengths))


def demo_corpus_files(max_bytes: int = 4_000_000) -> list[Path]:
    """Text that is on any machine with Python: the standard library's .py files, sorted, capped."""
    root = Path(sysconfig.get_paths()["stdlib"])
    files, total = [], 0
    for path in sorted(root.glob("*.py")):
        size = path.stat().st_size
        if total + size > max_bytes:
            break
        files.append(path)
        total += size
    if not files:
        raise ValueError(f"data build --demo: no .py files under {root}")
    return files


def tokenize_files(paths: Sequence[Path], tokenizer, counts: dict[str, int] | None = None) -> Iterable[np.ndarray]:
    """One document per non-empty file, each followed by the end-of-document token. Empty files make
    no document (they would be a lone end-of-document token); ``counts["empty"]`` says how many."""
    counts = {} if counts is None else counts
    for path in paths:
        data = Path(path).read_bytes()
        if not data:
            counts["empty"] = counts.get("empty", 0) + 1
            continue
        try:
            ids = tokenizer.encode(data)
        except UnicodeDecodeError as exc:
            raise ValueError(f"--input {str(path)!r}: not UTF-8 at byte {exc.start} ({exc.reason}); convert it (e.g."
                             " iconv -f LATIN1 -t UTF-8) or pass --replace-invalid-utf8 to build it with U+FFFD"
                             " in place of the bad bytes") from None
        yield np.append(ids, np.asarray(tokenizer.eod, dtype=np.asarray(ids).dtype))
