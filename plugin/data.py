"""Training data for the trainer: fixed-length windows, assigned to DP ranks identically under
every layout and determined by the consumed-samples counter alone (so a resume sees the same data).

Sample ``i`` of the run is window ``perm_e[i mod n]`` of epoch ``e = i // n``. Sample ``j`` of a
global batch that starts at ``consumed`` goes to DP rank ``j // (global_batch / dp)``.
``indexed`` data is read through megatron-core's ``IndexedDataset`` (via ``_mcore``) (files written by
``batchlaw data build``); ``synthetic`` data is a deterministic learnable sequence per sample.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["TokenWindows", "micro_batches"]


class TokenWindows:
    """Windows of ``seq_len + 1`` tokens from a token source, in a seeded order per epoch."""

    def __init__(self, kind: str, path: str, seq_len: int, vocab: int, seed: int, valid_fraction: float = 0.01):
        self.seq_len, self.vocab, self.seed, self.kind = seq_len, vocab, seed, kind
        if kind == "indexed":
            from batchlaw.plugin import _mcore

            ds = _mcore.indexed_dataset(path)
            stream = np.concatenate([np.asarray(ds[i]) for i in range(len(ds))]).astype(np.int64)
            if stream.max(initial=0) >= vocab:
                raise ValueError(f"data.path = {path!r}: token id {int(stream.max())} >= model.vocab = {vocab}")
            n = (len(stream) - 1) // seq_len
            if n < 2:
                raise ValueError(f"data.path = {path!r}: {len(stream)} tokens are too few for seq_len {seq_len}")
            self._stream = stream
            n_valid = max(1, int(n * valid_fraction))
            self.num_train, self.num_valid = n - n_valid, n_valid
        else:
            self._stream = None
            self.num_train, self.num_valid = 1 << 40, 1 << 20
        self._perm_cache: dict[int, np.ndarray] = {}

    def _window(self, w: int) -> np.ndarray:
        if self._stream is not None:
            return self._stream[w * self.seq_len: w * self.seq_len + self.seq_len + 1]
        rng = np.random.default_rng([self.seed, w])
        start = rng.integers(self.vocab)
        steps = rng.integers(1, 4, size=self.seq_len)  # a learnable walk: next = prev + {1,2,3}
        return (start + np.concatenate([[0], np.cumsum(steps)])) % self.vocab

    def _train_window(self, sample: int) -> int:
        if self._stream is None:
            return sample
        epoch, i = divmod(sample, self.num_train)
        if epoch not in self._perm_cache:
            self._perm_cache = {epoch: np.random.default_rng([self.seed, epoch]).permutation(self.num_train)}
        return int(self._perm_cache[epoch][i])

    def tokens(self, samples: np.ndarray, valid: bool = False) -> torch.Tensor:
        """[len(samples), seq_len + 1] token ids of training (or validation) samples."""
        if valid:
            base = self.num_train if self._stream is not None else (1 << 41)
            rows = [self._window(base + int(s) % self.num_valid) for s in samples]
        else:
            rows = [self._window(self._train_window(int(s))) for s in samples]
        return torch.from_numpy(np.stack(rows).astype(np.int64))


@dataclass(frozen=True)
class MicroBatch:
    """Inputs of one micro-batch."""

    tokens: torch.Tensor
    labels: torch.Tensor
    position_ids: torch.Tensor


def micro_batches(windows: TokenWindows, *, consumed: int, global_batch: int, dp_rank: int, dp_size: int,
                  micro_batch: int, valid: bool = False) -> list[MicroBatch]:
    """This DP rank's micro-batches of the global batch that starts at sample ``consumed``."""
    per_rank = global_batch // dp_size
    assert per_rank * dp_size == global_batch and per_rank % micro_batch == 0
    samples = consumed + dp_rank * per_rank + np.arange(per_rank)
    toks = windows.tokens(samples, valid=valid)
    pos = torch.arange(windows.seq_len).unsqueeze(0).expand(micro_batch, -1)
    out = []
    for k in range(per_rank // micro_batch):
        chunk = toks[k * micro_batch:(k + 1) * micro_batch]
        out.append(MicroBatch(chunk[:, :-1].contiguous(), chunk[:, 1:].contiguous(), pos))
    return out
