# Copyright (c) Res2Net-MMDet contributors. All rights reserved.
"""A toy training run on mmengine's Runner, for the loop and hook tests:
a linear model on data augmented in a loader worker, with this project's
resume and stop hooks; small enough to train in-process in a second."""
import itertools
import os
import signal
import time
from pathlib import Path
from typing import Callable, Dict, Iterator, Optional

import numpy as np
import pytest
import torch
from mmengine.hooks import Hook
from mmengine.model import BaseModel
from mmengine.registry import HOOKS
from mmengine.runner import Runner
from torch.utils.data import Dataset

from projects.res2net.datasets.sample_streams import use_sample_streams
from projects.res2net.engine.preemption import stop_signals


class NoisyPoints(Dataset):
    """Points with noise drawn by the worker that loads them (numpy's
    generator, as mmdet's random augmentations draw)."""

    def __init__(self, size: int = 8) -> None:
        self.points = torch.arange(
            size * 4, dtype=torch.float32).view(size, 4) / (
                size * 4)

    def __len__(self) -> int:
        return len(self.points)

    def __getitem__(self, index: int) -> Dict[str, torch.Tensor]:
        noise = torch.from_numpy(np.random.randn(4).astype(np.float32))
        return dict(inputs=self.points[index] + 0.1 * noise)


class Linear(BaseModel):
    """A linear map trained towards the sum of its inputs, with dropout: the
    training steps draw from torch's generator too."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(4, 1)
        self.drop = torch.nn.Dropout(0.5)

    def forward(self, inputs, data_samples=None, mode='tensor'):
        out = self.fc(self.drop(inputs))
        return dict(loss=((out.squeeze(1) - inputs.sum(1))**2).mean())


_RUNS = itertools.count()  # mmengine keys its loggers by experiment name


@HOOKS.register_module()
class SignalAtIterationHook(Hook):
    """Send this process ``signum`` before training iteration ``at``, as
    Slurm or a user would while the iteration runs.

    It waits until the signal is taken: the catcher thread may be scheduled
    later than an iteration of this toy run lasts on a busy machine.
    """

    def __init__(self, at: int, signum: int = signal.SIGTERM) -> None:
        self.at, self.signum = at, signum

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        if runner.iter == self.at:
            os.kill(os.getpid(), self.signum)
            deadline = time.monotonic() + 10
            while stop_signals().received is None:
                assert time.monotonic() < deadline, 'the signal was not taken'
                time.sleep(0.001)


def _streams(loader: dict, streams: bool) -> dict:
    """The loader with a random stream per sample, as tools/train.py makes
    it (projects/res2net/datasets/sample_streams.py), if ``streams``."""
    if streams:
        use_sample_streams(dict(train_dataloader=loader))
    return loader


def _toy_runner(work_dir: Path,
                *,
                epochs: int = 3,
                signal_at: Optional[int] = None,
                resume: Optional[Path] = None,
                num_workers: int = 1,
                persistent_workers: bool = False,
                streams: bool = False,
                batch_size: int = 2,
                loop: str = 'ResumableEpochBasedTrainLoop',
                hook_args: Optional[dict] = None) -> Runner:
    hooks = [
        dict(type='ExactResumeHook'),
        dict(type='SignalCheckpointHook', **(hook_args or {}))
    ]
    if signal_at is not None:
        hooks.append(dict(type='SignalAtIterationHook', at=signal_at))
    torch.manual_seed(0)  # the same initial weights in every run
    return Runner(
        model=Linear(),
        work_dir=str(work_dir),
        train_dataloader=_streams(
            dict(
                dataset=NoisyPoints(),
                sampler=dict(type='DefaultSampler', shuffle=True),
                collate_fn=dict(type='default_collate'),
                batch_size=batch_size,
                num_workers=num_workers,
                persistent_workers=persistent_workers), streams),
        train_cfg=dict(type=loop, max_epochs=epochs),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.05)),
        default_hooks=dict(
            checkpoint=dict(type='CheckpointHook', interval=1),
            logger=dict(type='LoggerHook', interval=1)),
        custom_hooks=hooks,
        randomness=dict(seed=3),
        load_from=str(resume) if resume else None,
        resume=resume is not None,
        default_scope='mmengine',
        experiment_name=f'toy_{next(_RUNS)}_{os.getpid()}')


@pytest.fixture
def toy_runner() -> Iterator[Callable[..., Runner]]:
    """``toy_runner(work_dir, epochs=3, signal_at=None, resume=None,
    num_workers=1, persistent_workers=False, streams=False, batch_size=2,
    loop=..., hook_args=None)``: a Runner of 4 iterations per epoch (8
    points, batches of 2) with ``ExactResumeHook`` and
    ``SignalCheckpointHook`` (``hook_args``), sent SIGTERM before
    iteration ``signal_at``; the loop ``ResumableEpochBasedTrainLoop``;
    ``streams``: a random stream per sample, as tools/train.py sets."""
    import projects.res2net  # noqa: F401  (registers the hooks and loop)
    runners = []

    def make(*args, **kwargs) -> Runner:
        runners.append(_toy_runner(*args, **kwargs))
        return runners[-1]

    yield make
    # A loader with persistent workers keeps them (in its iterator) after
    # the run; left to the garbage collector, their shutdown stalled a
    # later test for 100 s. A training process ends them as it exits.
    for runner in runners:
        loop = getattr(runner, '_train_loop', None)  # a dict until built
        loader = getattr(loop, 'dataloader', None)
        iterator = getattr(loader, '_iterator', None)
        if hasattr(iterator, '_shutdown_workers'):
            iterator._shutdown_workers()


@pytest.fixture(autouse=True)
def _own_stop_signals():
    """Each test starts and ends with the process's stop signals untaken."""
    stop_signals().restore()
    yield
    stop_signals().restore()
