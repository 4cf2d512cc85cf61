"""``batchlaw data build``: Megatron indexed datasets from text files (numpy only, no torch)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from batchlaw.tools.indexed_data import ByteTokenizer, demo_corpus_files, tokenize_files, write_indexed_dataset


_EOD_TOKENS = ("<|endoftext|>", "<|end_of_text|>", "</s>", "<eos>")  # GPT-2/Qwen, Llama 3, Llama 2/T5, Gemma


class _HFTokenizer:
    def __init__(self, path: str, replace_invalid: bool = False):
        self.replace_invalid, self.replaced = replace_invalid, 0
        try:
            from tokenizers import Tokenizer
        except ImportError as exc:
            raise ImportError("--tokenizer PATH needs the tokenizers package: pip install tokenizers") from exc
        if not Path(path).is_file():
            raise ValueError(f"--tokenizer = {path!r}: no such file; allowed are 'byte' or a tokenizers JSON file")
        try:
            self._tok = Tokenizer.from_file(path)
        except Exception as exc:  # the Rust side raises a bare Exception for a malformed file
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ValueError(f"--tokenizer = {path!r}: not a tokenizers JSON file ({first})") from None
        eod = next((i for i in (self._tok.token_to_id(t) for t in _EOD_TOKENS) if i is not None), None)
        if eod is None:
            raise ValueError(f"--tokenizer = {path!r}: has none of the end-of-document tokens"
                             f" {', '.join(_EOD_TOKENS)} to separate documents")
        self.eod = eod

    def encode(self, data: bytes):
        """Token ids of a file's bytes; invalid UTF-8 is an error unless ``replace_invalid`` (then each
        bad byte run becomes U+FFFD and ``replaced`` counts the files where that happened)."""
        import numpy as np

        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            if not self.replace_invalid:
                raise
            text, self.replaced = data.decode("utf-8", "replace"), self.replaced + 1
        return np.array(self._tok.encode(text).ids, dtype=np.int64)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="data_command", required=True)
    b = sub.add_parser("build", help="tokenize text files into PREFIX.bin / PREFIX.idx")
    b.add_argument("--input", nargs="*", default=[], help="text files (one document each)")
    b.add_argument("--demo", action="store_true", help="use the Python standard library's .py files")
    b.add_argument("--out", required=True, help="output prefix")
    b.add_argument("--tokenizer", default="byte", help="'byte' or a tokenizers JSON file")
    b.add_argument("--max-bytes", type=int, default=4_000_000, help="cap of the demo corpus")
    b.add_argument("--force", action="store_true", help="replace an existing PREFIX.bin / PREFIX.idx")
    b.add_argument("--replace-invalid-utf8", action="store_true",
                   help="tokenizers JSON only: read bytes that are not UTF-8 as U+FFFD (counted) instead of refusing")


def _check_prefix(out: str) -> None:
    """--out is a path prefix whose folder can exist: PREFIX.bin and PREFIX.idx are written beside it."""
    path = Path(out)
    if not out.strip() or out.endswith(("/", os.sep)) or path.name in ("", ".", ".."):
        raise ValueError(f"--out = {out!r}: a path prefix such as data/corpus (it writes data/corpus.bin and .idx)")
    for parent in path.parents:
        if parent.exists() and not parent.is_dir():
            raise ValueError(f"--out = {out!r}: {str(parent)!r} is a file, not a folder")


def run(args: argparse.Namespace) -> int:
    if args.demo == bool(args.input):
        raise ValueError("data build: give either --input FILE... or --demo")
    files = demo_corpus_files(args.max_bytes) if args.demo else [Path(p) for p in args.input]
    for f in files:
        if not Path(f).is_file():
            raise ValueError(f"--input {str(f)!r}: no such file")
    _check_prefix(args.out)
    existing = [f"{args.out}{s}" for s in (".bin", ".idx") if Path(f"{args.out}{s}").exists()]
    if existing and not args.force:
        raise ValueError(f"--out = {args.out!r}: {existing[0]} exists; --force replaces it (the old dataset is gone"
                         " then), or choose another prefix")
    if not any(Path(f).stat().st_size for f in files):
        raise ValueError(f"--input: {'the file is' if len(files) == 1 else f'all {len(files)} files are'} empty;"
                         " nothing to build")
    tok = ByteTokenizer() if args.tokenizer == "byte" else _HFTokenizer(args.tokenizer, args.replace_invalid_utf8)
    dtype = "uint16" if args.tokenizer == "byte" else "int32"
    import signal

    import numpy as np

    def _stop(signum, frame):  # SIGTERM (timeout, scancel) cleans up like Ctrl-C: no .tmp left behind
        raise KeyboardInterrupt

    previous, counts = signal.signal(signal.SIGTERM, _stop), {}
    try:
        docs, tokens = write_indexed_dataset(args.out, tokenize_files(files, tok, counts), dtype=np.dtype(dtype).type)
    finally:
        signal.signal(signal.SIGTERM, previous)
    notes = [f"replaced the existing {args.out}.bin/.idx"] if existing else []
    notes += [f"skipped {counts['empty']} empty files"] if counts.get("empty") else []
    notes += [f"{tok.replaced} files had bytes that are not UTF-8, read as U+FFFD"] if getattr(tok, "replaced", 0) else []
    print(f"wrote {args.out}.bin/.idx: {docs} documents, {tokens} tokens from {len(files)} files"
          + "".join(f"; {n}" for n in notes))
    return 0
