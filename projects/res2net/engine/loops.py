# Copyright (c) Res2Net-MMDet contributors. All rights reserved.
"""The training loop of epoch-based runs: mmengine's, resumable mid-epoch.

A checkpoint taken on a stop signal (:class:`~projects.res2net.engine.hooks.\
SignalCheckpointHook`) can stand anywhere in an epoch. mmengine's
``EpochBasedTrainLoop`` resumes its iteration count from it but trains the
epoch from its first batch again; :class:`ResumableEpochBasedTrainLoop`
goes on after the last batch trained. ``tools/train.py`` runs every
epoch-based config with it (:func:`use_resumable_loop`).
"""
from typing import Sequence

from mmengine.config import Config
from mmengine.registry import LOOPS
from mmengine.runner import EpochBasedTrainLoop

from ..errors import UserError


@LOOPS.register_module()
class ResumableEpochBasedTrainLoop(EpochBasedTrainLoop):
    """mmengine's ``EpochBasedTrainLoop`` that resumes in mid-epoch.

    Resumed after ``k`` iterations of an epoch, it reads the epoch's first
    ``k`` batches again without training on them, then trains on from
    batch ``k``. Reading them through the data loader (instead of working
    out where its samplers stand) keeps the sampler, a batch sampler's
    aspect-ratio groups and, without per-sample streams, the loader
    workers' generators on the course of a run never stopped; with them
    (``tools/train.py``: :mod:`projects.res2net.datasets.sample_streams`)
    each sample is augmented as before whatever loads it. The arguments
    and everything else are mmengine's.
    """

    _skip = 0  # batches of the current epoch trained before a resume

    def run(self):
        """Train, first going past the batches of a resumed epoch that were
        trained before its checkpoint."""
        length = len(self.dataloader)
        self._skip = self._iter - self._epoch * length
        if not 0 <= self._skip <= length:
            raise UserError(
                f'the checkpoint stands at iteration {self._iter} in epoch '
                f'{self._epoch + 1}, outside that epoch\'s {length} '
                'iterations: resume with the batch size and number of GPUs '
                'it was trained with')
        if self._skip:
            self.runner.logger.info(
                f'resuming in epoch {self._epoch + 1} after {self._skip} of '
                f'its {length} iterations: reading their batches again, '
                'without training, so that the data loader goes on as '
                'before')
        return super().run()

    def run_epoch(self) -> None:
        super().run_epoch()
        self._skip = 0

    def run_iter(self, idx: int, data_batch: Sequence[dict]) -> None:
        if idx < self._skip:
            return  # trained before the checkpoint
        super().run_iter(idx, data_batch)


def use_resumable_loop(cfg: Config) -> None:
    """Run an epoch-based config with :class:`ResumableEpochBasedTrainLoop`
    (same arguments); any other loop is left as the config names it."""
    loop = cfg.get('train_cfg')
    if not loop:
        return
    epoch_based = loop.get('type') == 'EpochBasedTrainLoop' or (
        'type' not in loop and loop.get('by_epoch', False))
    if epoch_based:
        loop.pop('by_epoch', None)
        loop['type'] = ResumableEpochBasedTrainLoop.__name__
