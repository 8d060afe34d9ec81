"""Pretraining data: manifest + frame labels → cropped, label-aligned, duration-bucketed batches.

* **Label alignment.** Labels come at rate ``r`` (e.g. 100 Hz MFCC k-means), the model emits
  frames at rate ``f`` (50 Hz). The target of model frame ``i`` is ``labels[floor(i * r / f)]``
  (clipped to the last label), so no rate is assumed implicitly.
* **Crops.** Utterances longer than ``max_sample_size`` are cut at a random start that is a
  whole number of model frames (``sample_rate / f`` samples), so the label offset of the crop is
  exact. Crops are drawn from ``(seed, epoch, index)``, not from a worker's RNG: they are the
  same whatever the worker count and after a resume.
* **Batches.** :class:`BucketBatchSampler` fills each batch up to ``max_tokens`` samples
  *including padding*: utterances are sorted by length (ties broken by a seeded shuffle), cut
  greedily into batches, the batch order is shuffled per epoch, and batches are dealt to
  data-parallel ranks (every rank gets the same number, so DDP steps stay in lock-step).
* **Batching modes** (``data.batching``). ``bucket``: items are padded to the batch's longest and
  the model gets a key-padding mask. ``crop_to_shortest`` (fairseq HuBERT's default,
  ``pad_audio: false``): the same batches, but every item is randomly cropped to the batch's
  shortest length (crop start on the model's frame grid, labels cut at the same frame offset), so
  each batch is rectangular, padding efficiency is 100 % and attention runs without any mask; the
  audio beyond the shortest item is not used in that epoch (``kept_fraction``).
* **Lock-step without a per-step check.** Every step takes exactly ``num_accumulate`` batches
  from the sampler on every rank (fewer only at the end of the epoch, equally on all ranks). A
  batch whose rows all fail to load becomes a zero-weight stand-in (one clip of silence whose
  loss is multiplied by 0) instead of being dropped, so no rank runs dry before the others and
  no collective is needed to find out.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
from fairseq2.datasets import DataReader

from audiossl.audio.io import AudioError, audio_info, load_audio
from audiossl.data.manifest import Manifest

log = logging.getLogger(__name__)

IGNORE_INDEX = -100


def align_labels(labels: np.ndarray, label_rate: float, frame_rate: float, num_frames: int, offset: int = 0) -> np.ndarray:
    """Targets for model frames ``offset .. offset+num_frames-1``: ``labels[floor(i * r / f)]``.

    ``labels``: ``[num_labels]`` (or ``[num_labels, codebooks]``) at ``label_rate``; returns
    ``[num_frames]`` (``[num_frames, codebooks]``) int64.
    Indices past the end are clipped to the last label (the label checks bound that gap).
    """
    if len(labels) == 0:
        raise ValueError("cannot align an empty label sequence")
    i = np.arange(offset, offset + num_frames, dtype=np.int64)
    # Integer arithmetic when the rates are whole numbers avoids floor(49.999...) surprises.
    if float(label_rate).is_integer() and float(frame_rate).is_integer():
        idx = (i * int(label_rate)) // int(frame_rate)
    else:
        idx = np.floor(i * (label_rate / frame_rate) + 1e-9).astype(np.int64)
    return np.asarray(labels, dtype=np.int64)[np.clip(idx, 0, len(labels) - 1)]


@dataclass
class PretrainBatch:
    """One padded batch. ``wavs [batch, sample]``, ``lengths [batch]``, ``targets [batch, frame]``
    (``[batch, frame, codebook]`` for multi-codebook codes; ``[batch, 0]`` when the run has no labels)."""

    wavs: torch.Tensor
    lengths: torch.Tensor
    targets: torch.Tensor
    real_samples: int
    padded_samples: int
    sample_rate: int
    num_skipped: int = 0
    skipped_rows: tuple[int, ...] = ()
    """Manifest rows of this batch whose audio could not be loaded (dropped from the batch)."""
    stand_in: bool = False
    """A zero-weight batch of silence standing in for a batch whose rows were all unreadable (its
    loss is multiplied by 0 and it is left out of the metrics); keeps the ranks in lock-step."""

    @property
    def padding_efficiency(self) -> float:
        return self.real_samples / max(1, self.padded_samples)

    @property
    def unpadded(self) -> bool:
        """No item is padded (decided on the host at collation: the step passes no lengths, so the
        model builds no attention mask; no device sync)."""
        return self.real_samples == self.padded_samples

    @property
    def audio_seconds(self) -> float:
        return self.real_samples / self.sample_rate

    def to(self, device, *, non_blocking: bool = False) -> "PretrainBatch":
        self.wavs = self.wavs.to(device, non_blocking=non_blocking)
        self.lengths = self.lengths.to(device, non_blocking=non_blocking)
        self.targets = self.targets.to(device, non_blocking=non_blocking)
        return self

    def pin_memory(self) -> "PretrainBatch":
        self.wavs, self.lengths, self.targets = self.wavs.pin_memory(), self.lengths.pin_memory(), self.targets.pin_memory()
        return self


class PretrainDataset(torch.utils.data.Dataset):
    """Row ``i`` → ``(wav [sample], targets [frame] or [frame, codebook])`` cropped to ``max_sample_size``.

    ``labels`` may be None (tokenizer training on audio only): targets are then empty.
    ``num_frames``: the model's frame count for a sample count (``model.encoder.num_frames``).
    ``lengths``: per-row length at ``sample_rate`` (from :func:`probe_lengths`).
    """

    def __init__(
        self,
        manifest: Manifest,
        labels: list[np.ndarray] | None,
        lengths: np.ndarray,
        *,
        sample_rate: int,
        label_rate: float,
        frame_rate: float,
        num_frames: Callable[[int], int],
        max_sample_size: int,
        seed: int = 0,
    ) -> None:
        if labels is not None and len(labels) != len(manifest):
            raise ValueError(f"{len(labels)} label rows for {len(manifest)} manifest rows")
        self.manifest, self.labels, self.lengths = manifest, labels, np.asarray(lengths)
        self.sample_rate, self.label_rate, self.frame_rate = sample_rate, label_rate, frame_rate
        self.num_frames, self.max_sample_size, self.seed = num_frames, max_sample_size, seed
        hop = sample_rate / frame_rate
        self.hop = int(round(hop)) if abs(hop - round(hop)) < 1e-6 else 1
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.manifest)

    def crop_lengths(self) -> np.ndarray:
        """``[N]`` lengths after cropping (what a batch really holds)."""
        return np.minimum(self.lengths, self.max_sample_size)

    def _read_crop(self, path: Path, index: int, epoch: int, size: int) -> tuple[torch.Tensor, int]:
        """``(crop [<= size samples], start)``. Files already at ``sample_rate`` are read from ``start``
        only (an hour-long file costs one crop, not a full decode); others are decoded, resampled, cut."""
        length = int(self.lengths[index])
        if length > size and audio_info(path).sample_rate == self.sample_rate:
            start = self.crop_start(index, epoch, length, size)
            wav, _ = load_audio(path, self.sample_rate, start=start, frames=size)
            return wav, start
        wav, _ = load_audio(path, self.sample_rate)
        start = self.crop_start(index, epoch, len(wav), size)
        return wav[start : start + size], start

    def crop_start(self, index: int, epoch: int, length: int, size: int | None = None) -> int:
        """Start of a ``size``-sample crop (default ``max_sample_size``) of a ``length``-sample row:
        deterministic in (seed, epoch, index); a multiple of the model hop."""
        excess = length - (self.max_sample_size if size is None else size)
        if excess <= 0:
            return 0
        rng = np.random.default_rng([self.seed, epoch, index])
        return int(rng.integers(0, excess // self.hop + 1)) * self.hop

    def __getitem__(self, key: int | tuple[int, int] | tuple[int, int, int]) -> tuple[torch.Tensor, torch.Tensor] | Skipped:
        """``key``: ``index``, ``(index, epoch)`` or ``(index, epoch, size)``: crop to ``size`` samples
        (``crop_to_shortest``: the batch's shortest; never more than ``max_sample_size``)."""
        if isinstance(key, tuple):
            index, epoch = key[0], key[1]
            size = min(int(key[2]), self.max_sample_size) if len(key) > 2 else self.max_sample_size
        else:
            index, epoch, size = key, self.epoch, self.max_sample_size
        path = self.manifest.path(index)
        try:
            wav, start = self._read_crop(path, index, epoch, size)
        except AudioError as e:
            log.warning("skipping %s: %s", e.path, e.reason + (f" ({e.detail})" if e.detail else ""))
            return Skipped(index)
        if self.labels is None:
            return wav, torch.zeros(0, dtype=torch.long)
        offset = start // self.hop if self.hop > 1 else int(round(start * self.frame_rate / self.sample_rate))
        targets = align_labels(self.labels[index], self.label_rate, self.frame_rate, self.num_frames(len(wav)), offset)
        return wav, torch.from_numpy(targets)


@dataclass(frozen=True)
class Skipped:
    """What :class:`PretrainDataset` yields for a row whose audio cannot be read."""

    index: int


class Collater:
    """Pads ``(wav, targets)`` pairs into a :class:`PretrainBatch`; ``None`` items (bad audio) are dropped."""

    def __init__(self, num_frames: Callable[[int], int], sample_rate: int) -> None:
        self.num_frames, self.sample_rate = num_frames, sample_rate

    def __call__(self, items: list) -> PretrainBatch:
        good = [it for it in items if it is not None and not isinstance(it, Skipped)]
        rows = tuple(it.index for it in items if isinstance(it, Skipped))
        skipped = len(items) - len(good)
        if not good:
            empty = torch.zeros(0, 0)
            return PretrainBatch(empty, torch.zeros(0, dtype=torch.long), torch.zeros(0, 0, dtype=torch.long), 0, 0, self.sample_rate, skipped, rows)
        lengths = torch.tensor([len(w) for w, _ in good], dtype=torch.long)
        max_len = int(lengths.max())
        wavs = torch.zeros(len(good), max_len)
        extra = tuple(good[0][1].shape[1:])  # (codebooks,) for multi-codebook codes
        num_t = self.num_frames(max_len) if good[0][1].numel() else 0
        targets = torch.full((len(good), num_t, *extra), IGNORE_INDEX, dtype=torch.long)
        for b, (w, t) in enumerate(good):
            wavs[b, : len(w)] = w
            targets[b, : len(t)] = t
        return PretrainBatch(wavs, lengths, targets, int(lengths.sum()), len(good) * max_len, self.sample_rate, skipped, rows)


class BucketBatchSampler:
    """Duration-bucketed batches of at most ``max_tokens`` padded samples, sharded over ranks.

    ``lengths``: ``[N]`` cropped lengths; rows with length < ``min_length`` are left out.
    Yields lists of ``(index, epoch)`` keys starting at ``position`` (the resume point);
    ``crop_to_shortest``: ``(index, epoch, shortest)`` keys, every item cropped to the batch's shortest.
    """

    def __init__(self, lengths: np.ndarray, max_tokens: int, *, seed: int = 0, rank: int = 0, world_size: int = 1, min_length: int = 1, shuffle: bool = True, crop_to_shortest: bool = False) -> None:
        lengths = np.asarray(lengths, dtype=np.int64)
        if lengths.size and lengths.max() > max_tokens:
            raise ValueError(
                f"max_tokens={max_tokens} is smaller than the longest (cropped) utterance, "
                f"{int(lengths.max())} samples; raise max_tokens or lower max_sample_size."
            )
        self.lengths, self.max_tokens, self.seed = lengths, max_tokens, seed
        self.rank, self.world_size, self.min_length, self.shuffle = rank, world_size, min_length, shuffle
        self.crop_to_shortest = crop_to_shortest
        self.epoch, self.position = 0, 0

    def batches(self, epoch: int) -> list[list[int]]:
        """All batches of ``epoch`` for this rank (deterministic in seed and epoch)."""
        rng = np.random.default_rng([self.seed, epoch])
        keep = np.flatnonzero(self.lengths >= self.min_length)
        if self.shuffle:
            keep = rng.permutation(keep)
        order = keep[np.argsort(self.lengths[keep], kind="stable")]
        batches: list[list[int]] = []
        cur: list[int] = []
        for idx in order.tolist():
            # Sorted ascending, so the newest row is the longest: padded size = count × its length.
            if cur and (len(cur) + 1) * int(self.lengths[idx]) > self.max_tokens:
                batches.append(cur)
                cur = []
            cur.append(idx)
        if cur:
            batches.append(cur)
        if self.shuffle:
            batches = [batches[i] for i in rng.permutation(len(batches))]
        per_rank = len(batches) // self.world_size
        return batches[self.rank : per_rank * self.world_size : self.world_size]

    def __len__(self) -> int:
        return len(self.batches(self.epoch))

    def shortest_length(self) -> int:
        """Length of the shortest row the sampler keeps (a length every model accepts)."""
        kept = self.lengths[self.lengths >= self.min_length]
        return int(kept.min()) if kept.size else self.min_length

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        epoch = self.epoch
        for b in self.batches(epoch)[self.position :]:
            if self.crop_to_shortest:
                shortest = int(self.lengths[b].min())
                yield [(i, epoch, shortest) for i in b]
            else:
                yield [(i, epoch) for i in b]

    def padding_efficiency(self, epoch: int = 0) -> float:
        """Real samples / padded samples over one epoch of this rank's batches (1.0 when cropping to the shortest)."""
        real = padded = 0
        for b in self.batches(epoch):
            lens = self.lengths[b]
            real += int(lens.min()) * len(b) if self.crop_to_shortest else int(lens.sum())
            padded += int(lens.min() if self.crop_to_shortest else lens.max()) * len(b)
        return real / max(1, padded)

    def kept_fraction(self, epoch: int = 0) -> float:
        """Samples the model sees / samples of the (max_sample_size-cropped) rows, over one epoch: 1.0
        for ``bucket``; below 1 for ``crop_to_shortest``, which drops what is beyond each batch's shortest."""
        seen = total = 0
        for b in self.batches(epoch):
            lens = self.lengths[b]
            total += int(lens.sum())
            seen += int(lens.min()) * len(b) if self.crop_to_shortest else int(lens.sum())
        return seen / max(1, total)


class PretrainDataReader(DataReader[PretrainBatch]):
    """fairseq2 ``DataReader`` over a :class:`PretrainDataset`: each ``next()`` is one step's batches.

    State is ``(epoch, position)``: batches are a pure function of (seed, epoch, rank), so a
    resumed run rebuilds the epoch and skips the ``position`` batches already trained on.
    ``reset()`` (called by the trainer at the end of an epoch) moves to the next epoch
    (``advance_epoch=False``: back to the start of the same one, for validation).

    Data-parallel ranks end an epoch at the same step by construction, with no collective: each
    ``next()`` consumes exactly ``num_accumulate`` sampler batches (the sampler gives every rank
    the same count) and an all-unreadable batch is replaced by a zero-weight stand-in.
    """

    def __init__(self, dataset: PretrainDataset, sampler: BucketBatchSampler, *, num_workers: int = 0, pin_memory: bool = False, num_accumulate: int = 1, advance_epoch: bool = True) -> None:
        self.dataset, self.sampler, self.advance_epoch = dataset, sampler, advance_epoch
        self.num_workers, self.pin_memory, self._num_accumulate = num_workers, pin_memory, num_accumulate
        self.collater = Collater(dataset.num_frames, dataset.sample_rate)
        self._it: Iterator[PretrainBatch] | None = None
        self.num_unreadable = 0
        """Rows found unreadable before training (header probe); set by the caller."""
        self.skipped_rows: set[int] = set()
        """Rows that failed to load during training (each counted once, whatever the epochs)."""

    # --- fairseq2 DataReader protocol -----------------------------------------------------
    def __iter__(self) -> "PretrainDataReader":
        return self

    def __next__(self) -> list[PretrainBatch]:
        if self._it is None:
            self._it = iter(self._loader())
        out: list[PretrainBatch] = []
        for _ in range(self._num_accumulate):
            try:
                batch = next(self._it)
            except StopIteration:
                break
            self.sampler.position += 1
            self.skipped_rows.update(batch.skipped_rows)
            if batch.wavs.shape[0] == 0:
                log.warning("every row of a batch was unreadable (rows %s); a zero-weight stand-in keeps the ranks in step", list(batch.skipped_rows))
                batch = self.stand_in()
            out.append(batch)
        if not out:
            raise StopIteration
        return out

    def stand_in(self) -> PretrainBatch:
        """One clip of silence (the sampler's shortest length) with ignored targets, ``stand_in=True``."""
        n = self.sampler.shortest_length()
        ds = self.dataset
        if ds.labels is None:
            targets = torch.zeros(0, dtype=torch.long)
        else:
            extra = np.asarray(ds.labels[0]).shape[1:]  # (codebooks,) for multi-codebook codes
            targets = torch.full((ds.num_frames(n), *extra), IGNORE_INDEX, dtype=torch.long)
        batch = self.collater([(torch.zeros(n), targets)])
        batch.real_samples = batch.padded_samples = 0
        batch.stand_in = True
        return batch

    def reset(self) -> None:
        self._it = None
        # A validation reader replays the same epoch (same crops) every time.
        self.sampler.epoch += 1 if self.advance_epoch else 0
        self.sampler.position = 0
        self.dataset.epoch = self.sampler.epoch

    def state_dict(self) -> dict[str, object]:
        return {"epoch": self.sampler.epoch, "position": self.sampler.position, "skipped_rows": sorted(self.skipped_rows)}

    def load_state_dict(self, state_dict: dict[str, object]) -> None:
        self._it = None
        self.sampler.epoch = int(state_dict["epoch"])  # type: ignore[arg-type]
        self.sampler.position = int(state_dict["position"])  # type: ignore[arg-type]
        self.skipped_rows = {int(i) for i in state_dict.get("skipped_rows", [])}  # type: ignore[union-attr]
        self.dataset.epoch = self.sampler.epoch

    @property
    def num_skipped(self) -> int:
        """Unreadable rows: found by the probe plus those that failed to load while training."""
        return self.num_unreadable + len(self.skipped_rows)

    @property
    def num_accumulate(self) -> int:
        return self._num_accumulate

    # ----------------------------------------------------------------------------------------
    def _loader(self) -> torch.utils.data.DataLoader:
        # A private generator: creating the loader must not draw from the global torch RNG,
        # or a resumed run (which creates it at a different moment) would mask differently.
        gen = torch.Generator().manual_seed(self.sampler.seed * 1000003 + self.sampler.epoch)
        return torch.utils.data.DataLoader(
            self.dataset,
            batch_sampler=list(iter(self.sampler)),
            num_workers=self.num_workers,
            collate_fn=self.collater,
            pin_memory=self.pin_memory,
            generator=gen,
            persistent_workers=False,
            prefetch_factor=4 if self.num_workers > 0 else None,
        )
