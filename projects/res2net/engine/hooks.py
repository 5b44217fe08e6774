# Copyright (c) Res2Net-MMDet contributors. All rights reserved.
"""The hooks of this project, registered in mmengine's ``HOOKS``: exact
resume and a clean stop on a non-finite loss in training, and the deploy
form in testing.

The configs name the training hooks (``configs/_base_/res2net_backbones.py``)::

    custom_hooks = [dict(type='ExactResumeHook'), dict(type='FiniteLossHook')]

``tools/test.py --deploy`` adds :class:`DeployHook`.
"""
import math
import random
from typing import Any, Mapping, Optional, Sequence

import numpy as np
import torch
from mmengine.hooks import Hook
from mmengine.registry import HOOKS
from mmengine.runner import EpochBasedTrainLoop, IterBasedTrainLoop

from ..errors import NonFiniteLoss, UserError
from ..models.deploy import DeployReport, deploy


def reseed(seed: int, *position: int) -> None:
    """Seed torch (CPU and every CUDA device), numpy and ``random`` from
    ``seed`` and a position in training (epoch or iteration)."""
    state = np.random.SeedSequence([seed, *position]).generate_state(2)
    value = int(state[0]) << 32 | int(state[1])
    torch.manual_seed(value)  # seeds the CUDA devices too
    np.random.seed(int(state[0]))
    random.seed(value)


@HOOKS.register_module()
class ExactResumeHook(Hook):
    """Make a resumed run continue exactly where the killed one stood.

    mmengine's checkpoints keep no random state, so after ``--resume``
    everything random (RoI sampling, shuffling, augmentation) takes another
    path. Storing the generators' states in the checkpoint would not be
    enough either: between the save and the next training step the
    original run may validate, and creating the validation loader draws
    from torch's generator. So this hook makes the random state of each
    training step a function of where it stands instead: before every
    iteration it reseeds torch (CPU and CUDA), numpy and ``random`` from the
    run's seed (``randomness.seed``, stored in every checkpoint by mmengine)
    and the iteration, and before every epoch from the seed and the epoch,
    before that epoch's data loader starts. A resumed run reseeds the same
    way at the same positions, and so draws the same numbers.

    The rest of the state mmengine already restores or replays: the
    samplers' order follows from the seed and the epoch (``DefaultSampler``)
    or is advanced by re-reading the skipped batches (``InfiniteSampler``,
    in ``IterBasedTrainLoop``), and loader workers are seeded from the seed
    and their number. Two set-ups cannot be replayed, and the hook says so
    when such a run is resumed: an epoch-based run with
    ``persistent_workers=True`` (its workers' generators run on across
    epochs; a resumed run starts them afresh) and an iteration-based run
    that augments in the main process (``num_workers=0``: re-reading the
    skipped batches draws from its generators).

    With ``randomness.diff_rank_seed=True`` each rank gets its own stream:
    mmengine adds the rank to ``runner.seed`` then.
    """

    priority = 'VERY_HIGH'  # before any other hook draws a random number

    def before_train(self, runner) -> None:
        """On a resumed run, name a set-up whose data cannot be replayed."""
        if runner.iter == 0:
            return
        why = self.inexact_resume(runner.train_loop, runner.cfg)
        if why:
            runner.logger.warning(f'this resume is not exact: {why}')

    @staticmethod
    def inexact_resume(loop: Any, cfg: Mapping) -> Optional[str]:
        """Why resuming ``loop`` cannot replay its data, or None."""
        loader = cfg.get('train_dataloader', {})
        workers = loader.get('num_workers', 0)
        if isinstance(loop, EpochBasedTrainLoop) and workers > 0 and \
                loader.get('persistent_workers', False):
            return ('the augmentations drawn in persistent loader workers '
                    'restart their random streams; for an exact resume train'
                    ' with --cfg-options '
                    'train_dataloader.persistent_workers=False')
        if isinstance(loop, IterBasedTrainLoop) and workers == 0:
            return ('re-reading the skipped batches in the main process '
                    'draws from its random generators; for an exact resume '
                    'train with train_dataloader.num_workers >= 1')
        return None

    def before_train_epoch(self, runner) -> None:
        reseed(runner.seed, 0, runner.epoch)

    def before_train_iter(self,
                          runner,
                          batch_idx: int,
                          data_batch: Optional[Sequence] = None) -> None:
        reseed(runner.seed, 1, runner.iter)


@HOOKS.register_module()
class FiniteLossHook(Hook):
    """Stop the run at the first NaN or infinite loss, naming the term.

    It runs before the checkpoint hook, so the step that diverged is never
    saved: the last checkpoint on disk stays the last good one, and
    ``--resume`` continues from it (after, say, a lower learning rate or a
    gradient clip).
    """

    priority = 'ABOVE_NORMAL'  # before CheckpointHook (VERY_LOW)

    def after_train_iter(self,
                         runner,
                         batch_idx: int,
                         data_batch: Optional[Sequence] = None,
                         outputs: Optional[Mapping[str, Any]] = None) -> None:
        values = {
            name: _scalar(value)
            for name, value in (outputs or {}).items()
        }
        bad = [
            f'{name}={value}' for name, value in values.items()
            if value is not None and not math.isfinite(value)
        ]
        if bad:
            last = runner.message_hub.get_info('last_ckpt')
            then = f'then resume from {last}' if last else \
                'no checkpoint was saved before it'
            raise NonFiniteLoss(
                f'training diverged at iteration {runner.iter + 1}: '
                f'{", ".join(bad)}; lower the learning rate or clip the '
                f'gradients (optim_wrapper.clip_grad), {then}')


def _scalar(value: Any) -> Optional[float]:
    """A logged value as a float; None for what is not one number."""
    if isinstance(value, torch.Tensor):
        return float(value.detach()) if value.numel() == 1 else None
    return float(value) if isinstance(value, (int, float)) else None


@HOOKS.register_module()
class DeployHook(Hook):
    """Test the deploy form of the model: :func:`deploy` applied once the
    checkpoint is loaded, before the first test batch.

    ``tools/test.py --deploy`` adds it, so that the AP of the deploy form is
    measured by the same test loop and metric as the trained model's. In a
    config: ``custom_hooks = [dict(type='DeployHook')]``.

    Args:
        fold_bn: Fold BatchNorm layers into convs.
        channels_last: Run in channels-last.
        compile: Compile the backbone and neck with ``torch.compile``.
    """

    priority = 'VERY_LOW'  # after every hook that may touch the weights

    def __init__(self,
                 fold_bn: bool = True,
                 channels_last: bool = True,
                 compile: bool = False) -> None:
        if not (fold_bn or channels_last or compile):
            raise UserError('DeployHook with fold_bn, channels_last and '
                            'compile all off would test the model unchanged;'
                            ' turn one on or drop the hook')
        self.options = dict(
            fold_bn=fold_bn, channels_last=channels_last, compile=compile)
        self.report: Optional[DeployReport] = None

    def before_test(self, runner) -> None:
        """Deploy the model whose checkpoint the Runner has just loaded."""
        self.report = deploy(runner.model, **self.options)
        runner.logger.info(f'deploy form: {self.report.summary()}')
