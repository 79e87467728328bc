"""The Human3.6M test set as a LightningDataModule: patches plus everything needed to score them."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from .crops import CropCache, crop_patch, read_image
from .h36m import TestIndex, load_test_index
from .selection import drop_sequences


class H36MTestDataset(Dataset):
    """Item i: the uint8 RGB patch (3, S, S) of test image i and its scoring metadata.

    Normalization happens on the device, in the model's precision: moving uint8
    is four times cheaper than float32.
    """

    def __init__(self, root: Path, index: TestIndex, input_size: int, crop_cache: CropCache | None) -> None:
        self.root = root
        self.index = index
        self.input_size = input_size
        self.crop_cache = crop_cache

    def __len__(self) -> int:
        return len(self.index)

    def _patch(self, i: int) -> tuple[np.ndarray, bool]:
        path = self.root / "images" / str(self.index.file_name[i])
        bbox = self.index.bbox[i]
        if self.crop_cache is not None:
            patch = self.crop_cache.load(path, bbox, self.input_size) if path.is_file() else None
            if patch is not None:
                return patch, True
        patch = crop_patch(read_image(path), bbox, self.input_size)
        if self.crop_cache is not None:
            self.crop_cache.store(path, bbox, self.input_size, patch)
        return patch, False

    def __getitem__(self, i: int) -> dict[str, Any]:
        patch, cached = self._patch(i)
        idx = self.index
        return {
            "image": torch.from_numpy(patch).permute(2, 0, 1),
            "index": i,
            "image_id": int(idx.image_id[i]),
            "action": int(idx.action[i]),
            "subject": int(idx.subject[i]),
            "bbox": torch.from_numpy(idx.bbox[i]),
            "root_cam": torch.from_numpy(idx.root_cam[i]),
            "joint_cam": torch.from_numpy(idx.joint_cam[i]),
            "focal": torch.from_numpy(idx.focal[i]),
            "center": torch.from_numpy(idx.center[i]),
            "cached": cached,
        }


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
        self.dataset: H36MTestDataset | None = None

    def setup(self, stage: str | None = None) -> None:
        if self.dataset is not None:
            return
        index = drop_sequences(load_test_index(self.root, self.protocol, self.use_gt_info, self.index_cache_dir), self.skip_sequences)
        cache = CropCache(self.crop_cache_dir) if self.crop_cache_dir else None
        self.dataset = H36MTestDataset(self.root, index, self.input_size, cache)

    def test_dataloader(self) -> DataLoader:
        assert self.dataset is not None, "setup() first"
        trainer = self.trainer
        rank, world = (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)
        workers = min(self.num_workers, os.cpu_count() or 1)
        return DataLoader(
            self.dataset,
            batch_size=self.batch_size,
            sampler=ShardSampler(len(self.dataset), rank, world),
            num_workers=workers,
            pin_memory=self.pin_memory,
            persistent_workers=False,
            prefetch_factor=4 if workers > 0 else None,
        )
