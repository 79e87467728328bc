"""The Human3.6M test set as a LightningDataModule: patches plus everything needed to score them."""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset, Sampler, Subset
from torch.utils.data._utils.collate import default_collate

from .crop_store import CropStore, fresh_crop
from .h36m import TestIndex, load_test_index
from .selection import drop_sequences


class H36MTestDataset(Dataset):
    """Test image i: its uint8 RGB patch (3, S, S) and its scoring metadata.

    Batches are built whole by ``__getitems__`` (which the DataLoader calls with
    a batch's indices): one read of the crop store per batch, and metadata by
    slicing the index arrays. Normalization happens on the device, in the
    model's precision: moving uint8 is four times cheaper than float32.
    """

    def __init__(self, root: Path, index: TestIndex, input_size: int, store: CropStore | None) -> None:
        self.root = root
        self.index = index
        self.input_size = input_size
        self.store = store

    def __len__(self) -> int:
        return len(self.index)

    def _fresh_patches(self, rows: np.ndarray) -> np.ndarray:
        idx = self.index
        patches = [
            fresh_crop(self.root / "images" / str(idx.file_name[row]), idx.bbox[row], *(int(v) for v in idx.image_size[row]), self.input_size)[0]
            for row in rows
        ]
        return np.stack(patches)

    def __getitems__(self, indices: Sequence[int]) -> dict[str, torch.Tensor]:
        """The batch of ``indices``: ``image`` (B, 3, S, S) uint8 laid out channels-last, the rest per image."""
        rows = np.asarray(indices, dtype=np.int64)
        if self.store is not None:
            patches, cached = self.store.fetch(rows)
        else:
            patches, cached = self._fresh_patches(rows), np.zeros(len(rows), dtype=bool)
        idx = self.index
        return {
            "image": torch.from_numpy(patches).permute(0, 3, 1, 2),
            "index": torch.from_numpy(rows),
            "image_id": torch.from_numpy(idx.image_id[rows]),
            "action": torch.from_numpy(idx.action[rows]),
            "subject": torch.from_numpy(idx.subject[rows]),
            "bbox": torch.from_numpy(idx.bbox[rows]),
            "root_cam": torch.from_numpy(idx.root_cam[rows]),
            "joint_cam": torch.from_numpy(idx.joint_cam[rows]),
            "focal": torch.from_numpy(idx.focal[rows]),
            "center": torch.from_numpy(idx.center[rows]),
            "cached": torch.from_numpy(cached),
        }

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {key: value[0] for key, value in self.__getitems__([i]).items()}


def collate_batch(batch: Mapping[str, torch.Tensor] | list[Any]) -> Any:
    """Batches from ``__getitems__`` are already whole; item lists (other datasets) are collated as usual."""
    return batch if isinstance(batch, Mapping) else default_collate(batch)


class ShardSampler(Sampler[int]):
    """Rank r of w gets indices r, r + w, r + 2w, ...: every image exactly once, no padding.

    Lightning's default DistributedSampler pads the last shard with repeats so
    all ranks get equal counts; repeated images would be scored twice.
    """

    def __init__(self, length: int, rank: int, world_size: int) -> None:
        self.length, self.rank, self.world_size = length, rank, world_size

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, self.length, self.world_size))

    def __len__(self) -> int:
        return max(0, math.ceil((self.length - self.rank) / self.world_size))


def _store_and_rows(dataset: Dataset, positions: list[int]) -> tuple[CropStore | None, list[int]]:
    """The crop store behind ``dataset`` (possibly a Subset of the test set) and its rows at ``positions``."""
    while isinstance(dataset, Subset):
        positions = [int(dataset.indices[p]) for p in positions]
        dataset = dataset.dataset
    return (dataset.store if isinstance(dataset, H36MTestDataset) else None), positions


def worker_start_method() -> str | None:
    """How DataLoader workers start: forked on Linux, as PyTorch does there, even in a DDP rank that was itself
    spawned (a spawned process inherits "spawn" as its default, and every worker would then start a fresh
    interpreter and import torch and Lightning again: seconds per worker per run). Elsewhere the platform's
    default (macOS and Windows spawn)."""
    return "fork" if sys.platform.startswith("linux") else None


class H36MDataModule(pl.LightningDataModule):
    """Reads and checks the index in ``setup``; serves unpadded shards on every rank."""

    def __init__(
        self,
        root: str,
        protocol: int,
        use_gt_info: bool,
        input_size: int,
        batch_size: int,
        num_workers: int,
        pin_memory: bool,
        crop_cache_dir: str | None,
        index_cache_dir: str | None,
        skip_sequences: tuple[str, ...] = (),
    ) -> None:
        super().__init__()
        self.root = Path(root).expanduser()
        self.protocol = int(protocol)
        self.use_gt_info = bool(use_gt_info)
        self.input_size = int(input_size)
        self.batch_size = int(batch_size)
        self.num_workers = int(num_workers)
        self.pin_memory = bool(pin_memory)
        self.crop_cache_dir = crop_cache_dir
        self.index_cache_dir = index_cache_dir
        self.skip_sequences = tuple(skip_sequences)
        self.dataset: Dataset | None = None

    def setup(self, stage: str | None = None) -> None:
        if self.dataset is not None:
            return
        index = drop_sequences(load_test_index(self.root, self.protocol, self.use_gt_info, self.index_cache_dir), self.skip_sequences)
        box_source = f"protocol {self.protocol}, {'ground-truth boxes' if self.use_gt_info else 'RootNet boxes'}"
        store = CropStore(self.crop_cache_dir, self.root, index, box_source, self.input_size) if self.crop_cache_dir else None
        self.dataset = H36MTestDataset(self.root, index, self.input_size, store)

    def worker_count(self, positions: list[int]) -> int:
        """Worker processes for a shard: none when every crop is in the store (reading a batch from the page
        cache is cheaper than starting workers and passing them the batches), else ``num_workers``, which
        then decode and fill the store in parallel."""
        assert self.dataset is not None
        store, rows = _store_and_rows(self.dataset, positions)
        if self.num_workers == 0 or (store is not None and store.is_warm(rows)):
            return 0
        return min(self.num_workers, os.cpu_count() or 1)

    def test_dataloader(self) -> DataLoader:
        assert self.dataset is not None, "setup() first"
        trainer = self.trainer
        rank, world = (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)
        sampler = ShardSampler(len(self.dataset), rank, world)
        workers = self.worker_count(list(sampler))
        return DataLoader(
            self.dataset,
            batch_size=self.batch_size,
            sampler=sampler,
            num_workers=workers,
            collate_fn=collate_batch,
            pin_memory=self.pin_memory,
            persistent_workers=False,
            prefetch_factor=4 if workers > 0 else None,
            multiprocessing_context=worker_start_method() if workers > 0 else None,
        )
