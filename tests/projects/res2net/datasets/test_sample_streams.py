# Copyright (c) Res2Net-MMDet contributors. All rights reserved.
"""projects/res2net/datasets/sample_streams.py: each sample's augmentations
are a function of the seed, the epoch and its index, whatever loads it.

A whole run resumed with other loader settings is in
tests/projects/res2net/engine/test_loops.py (in-process) and
tests/tools/test_train_test.py (the detector, through the tools).
"""
import pickle
import random
from typing import Dict, List, Tuple

import numpy as np
import pytest
import torch
from mmdet.datasets.samplers import AspectRatioBatchSampler
from mmengine.config import Config
from mmengine.registry import DATA_SAMPLERS, DATASETS
from torch.utils.data import DataLoader, Dataset

from projects.res2net.datasets.sample_streams import (SampleIndex,
                                                      SeededDataset,
                                                      SeededSampler,
                                                      use_sample_streams)
from projects.res2net.engine.cli import innermost
from projects.res2net.engine.hooks import reseed


class Draws(Dataset):
    """Each sample is what the generators give while it loads: the three an
    mmdet pipeline may draw from."""

    def __init__(self, size: int = 6) -> None:
        self.size = size

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> Tuple[int, Tuple[float, ...]]:
        return index, (np.random.rand(), random.random(), torch.rand(1).item())

    def get_data_info(self, index: int) -> Dict[str, int]:
        # Two aspect ratios, for mmdet's AspectRatioBatchSampler.
        return dict(width=10, height=5 if index % 2 else 20)


def _epochs(loader: DataLoader, sampler: SeededSampler,
            epochs: List[int]) -> Dict[Tuple[int, int], tuple]:
    """(epoch, index) -> the sample's draws, over ``epochs``."""
    seen = {}
    for epoch in epochs:
        sampler.set_epoch(epoch)
        for batch in loader:
            for index, draws in batch:
                seen[epoch, index] = draws
    return seen


def _loader(workers: int, persistent: bool = False, seed: int = 5):
    dataset = SeededDataset(Draws())
    sampler = SeededSampler(
        dict(type='DefaultSampler', shuffle=True), dataset=dataset, seed=seed)
    loader = DataLoader(
        dataset,
        sampler=sampler,
        batch_size=2,
        num_workers=workers,
        persistent_workers=persistent,
        collate_fn=list)  # the samples as loaded
    return loader, sampler


def test_a_sample_draws_the_same_whatever_loads_it():
    main, sampler = _loader(0)
    expected = _epochs(main, sampler, [0, 1, 2])
    assert len(expected) == 18
    # Epochs and samples draw apart from each other.
    assert len(set(expected.values())) == 18

    # Two persistent workers, which run on across epochs...
    persistent, sampler = _loader(2, persistent=True)
    assert _epochs(persistent, sampler, [0, 1, 2]) == expected
    # ... and a run resumed at epoch 2: fresh workers, another number.
    resumed, sampler = _loader(1)
    assert _epochs(resumed, sampler, [2]) == {
        key: value
        for key, value in expected.items() if key[0] == 2
    }
    # Another seed, other draws.
    other, sampler = _loader(0, seed=6)
    assert not set(_epochs(other, sampler, [0]).values()) & set(
        expected.values())


def test_a_sampler_that_repeats_an_index_gives_each_time_its_own_stream():
    dataset = SeededDataset(Draws(3))

    def first_nine() -> list:
        sampler = SeededSampler(
            dict(type='InfiniteSampler', shuffle=True),
            dataset=dataset,
            seed=1)
        return [index for index, _ in zip(sampler, range(9))]

    indices = first_nine()
    assert sorted(map(int, indices)) == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    draws = [dataset[index][1] for index in indices]
    assert len(set(draws)) == 9  # every pass over the data draws anew
    # A resumed run, which reads them again: the same draws.
    assert [dataset[index][1] for index in first_nine()] == draws


def test_a_sample_index_is_an_int_that_keeps_its_stream():
    index = SampleIndex(4, (5, 2, 0, 4, 0))
    assert index == 4 and isinstance(index, int)
    copy = pickle.loads(pickle.dumps(index))  # as to a loader worker
    assert copy == 4 and copy.stream == index.stream
    # Without a stream (a plain int) the dataset loads as unwrapped.
    dataset = SeededDataset(Draws())
    reseed(0)
    plain = dataset[4]
    reseed(0)
    assert Draws()[4] == plain


def test_wrapped_parts_read_as_the_originals():
    dataset = SeededDataset(dict(type='mmdet.CocoDataset', lazy_init=True))
    assert dataset.metainfo == dataset.dataset.metainfo  # names the classes
    # Any other attribute is the wrapped dataset's.
    assert dataset.test_mode is False and not dataset._fully_initialized
    seeded = SeededDataset(Draws())
    sampler = DATA_SAMPLERS.build(
        dict(
            type='SeededSampler',
            sampler=dict(type='DefaultSampler', shuffle=False)),
        default_args=dict(dataset=seeded, seed=0))
    assert len(sampler) == 6 and sampler.seed == 0
    # mmdet's batch sampler groups the tagged indices by aspect ratio.
    batches = list(AspectRatioBatchSampler(sampler, batch_size=2))
    assert [list(map(int, batch)) for batch in batches] == [[0, 2], [1, 3],
                                                            [4, 5]]
    assert all(isinstance(i, SampleIndex) for batch in batches for i in batch)
    pickle.loads(pickle.dumps(seeded))  # a worker gets a copy


def test_a_config_gets_its_streams_once():
    cfg = Config(
        dict(
            train_dataloader=dict(
                sampler=dict(type='DefaultSampler', shuffle=True),
                dataset=dict(type='CocoDataset', ann_file='a.json'))))
    use_sample_streams(cfg)
    loader = cfg.train_dataloader
    assert loader.sampler == dict(
        type='SeededSampler',
        sampler=dict(type='DefaultSampler', shuffle=True))
    assert innermost(loader.dataset).ann_file == 'a.json'
    use_sample_streams(cfg)  # a config a run dumped: already wrapped
    assert loader.dataset.dataset.type == 'CocoDataset'
    use_sample_streams(Config())  # nothing to train: unchanged


@pytest.mark.parametrize('registry, name', [(DATA_SAMPLERS, 'SeededSampler'),
                                            (DATASETS, 'SeededDataset')])
def test_the_wrappers_are_found_from_any_scope(registry, name):
    # In mmengine's root registries: mmdet's configs (default_scope mmdet)
    # and plain mmengine runs find them.
    assert registry.get(name) is not None
