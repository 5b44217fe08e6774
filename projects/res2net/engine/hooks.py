# Copyright (c) Res2Net-MMDet contributors. All rights reserved.
"""The hooks of this project, registered in mmengine's ``HOOKS``: exact
resume, a clean stop on a non-finite loss and a checkpoint on a stop signal
in training, and the deploy form in testing.

The configs name the training hooks (``configs/_base_/res2net_backbones.py``)::

    custom_hooks = [
        dict(type='ExactResumeHook'),
        dict(type='FiniteLossHook'),
        dict(type='SignalCheckpointHook'),
    ]

``tools/test.py --deploy`` adds :class:`DeployHook`.
"""
import math
import os
import os.path as osp
import random
from typing import Any, Mapping, Optional, Sequence

import numpy as np
import torch
from mmengine.dist import all_reduce, barrier, get_rank, is_main_process
from mmengine.hooks import CheckpointHook, Hook
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS
from mmengine.runner import EpochBasedTrainLoop, IterBasedTrainLoop

from ..errors import ConfigValueError, NonFiniteLoss, UserError
from ..models.deploy import DeployReport, deploy
from ..models.precision import PRECISIONS, to_precision
from .fileio import ATOMIC_BACKEND_ARGS, write_text
from .preemption import TrainingStopped, restart_count, stop_signals
from .quantize import int8_program_for


def reseed(seed: int, *position: int, devices: bool = True) -> None:
    """Seed torch, numpy and ``random`` from ``seed`` and a position in
    training (epoch, iteration or sample).

    Args:
        devices: Seed torch on every device (CUDA's too), not on the CPU
            only. A data sample's transforms draw on the CPU, and seeding
            the devices costs about 0.1 ms, a sample's time in the demo.
    """
    state = np.random.SeedSequence([seed, *position]).generate_state(2)
    value = int(state[0]) << 32 | int(state[1])
    if devices:
        torch.manual_seed(value)  # seeds the CUDA devices too
    else:
        torch.default_generator.manual_seed(value)
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

    The data is replayed too. ``tools/train.py`` gives each sample its own
    random stream, a function of the seed, the epoch and the sample's
    index (:mod:`projects.res2net.datasets.sample_streams`), so a sample is
    augmented the same whichever worker loads it, however many there are,
    persistent or not, and after any resume; the samplers' order follows
    from the seed and the epoch (``DefaultSampler``) or is advanced by
    re-reading the skipped batches (``InfiniteSampler``, in
    ``IterBasedTrainLoop``), and a run resumed in mid-epoch re-reads the
    epoch's trained batches (:class:`~.loops.ResumableEpochBasedTrainLoop`).
    A loader built without those streams (a Runner made from a config by
    other code than ``tools/train.py``) replays its data only where the
    workers restart at the resume point, and the hook says so when it
    cannot: with ``persistent_workers=True`` in an epoch-based run, or
    a mid-epoch resume in the main process (``num_workers=0``).

    With ``randomness.diff_rank_seed=True`` each rank gets its own stream:
    mmengine adds the rank to ``runner.seed`` then.
    """

    priority = 'VERY_HIGH'  # before any other hook draws a random number

    def before_train(self, runner) -> None:
        """On a resumed run, name a set-up whose data cannot be replayed."""
        if runner.iter == 0:
            return
        why = self.inexact_resume(runner.train_loop)
        if why:
            runner.logger.warning(f'this resume is not exact: {why}')

    @staticmethod
    def inexact_resume(loop: Any) -> Optional[str]:
        """Why resuming ``loop`` cannot replay its data, or None."""
        loader = loop.dataloader
        # SeededSampler tags each index with its stream, SeededDataset
        # seeds from it (projects/res2net/datasets/sample_streams.py).
        sampler = getattr(loader.batch_sampler, 'sampler', loader.sampler)
        if getattr(sampler, 'tags_samples', False) and getattr(
                loader.dataset, 'seeds_samples', False):
            return None  # each sample's stream follows from its position
        fix = ('; for an exact resume train with tools/train.py, which gives '
               'each sample its own random stream')
        if isinstance(loop, EpochBasedTrainLoop) and loader.num_workers > 0 \
                and loader.persistent_workers:
            return ('the augmentations drawn in persistent loader workers '
                    'restart their random streams' + fix)
        # Resumed after some of an epoch's batches (iteration-based: of its
        # one long epoch), the loop reads them again.
        if loader.num_workers == 0 and (isinstance(loop, IterBasedTrainLoop)
                                        or loop.iter % len(loader)):
            return ('re-reading the skipped batches in the main process '
                    'draws from its random generators' + fix)
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


@HOOKS.register_module()
class SignalCheckpointHook(Hook):
    """On a stop signal, checkpoint the exact position and end the run.

    The signals (SIGUSR1, Slurm's warning before a job's time limit;
    SIGTERM, a preemption or the limit itself; SIGINT, Ctrl-C) no longer
    kill a training run: the iteration in progress ends, every rank agrees
    to stop there, rank 0 saves a checkpoint of that position (mid-epoch
    too, atomically, and named in ``last_checkpoint``), and the run ends
    with :class:`~projects.res2net.engine.preemption.TrainingStopped`.
    ``tools/train.py`` then leaves the process group and requeues the Slurm
    job, or says how to resume (:func:`~projects.res2net.engine.preemption.\
conclude`). A signal during validation stops the run at the end of the
    validation step, at the epoch's checkpoint. With ``ExactResumeHook`` the
    resumed run ends with the weights of one never stopped.

    ``tools/train.py`` takes the signals at its start, so that a signal
    during the start-up stops the run after its first iteration, and the
    data loader workers (forked later) ignore them: Slurm signals every
    process of a job step. Elsewhere the hook takes them before training.

    Args:
        max_requeues: How often a Slurm job may requeue itself; a job that
            has used them up ends instead, saying why.
    """

    priority = 'LOWEST'  # after the checkpoint and logger hooks: a step whole

    def __init__(self, max_requeues: int = 10) -> None:
        if not isinstance(max_requeues, int) or max_requeues < 0:
            raise ConfigValueError(
                f'SignalCheckpointHook: max_requeues={max_requeues!r}: not a '
                'number of requeues (0 or more)')
        self.max_requeues = max_requeues
        self.signals = stop_signals()
        self.started_at = 0

    def before_train(self, runner) -> None:
        self.started_at = runner.iter
        self.signals.install()
        restarts = restart_count()
        if restarts:
            runner.logger.info(
                f'Slurm job {os.environ["SLURM_JOB_ID"]} was requeued '
                f'({restarts} of at most {self.max_requeues}): going on from '
                f'iteration {runner.iter}')

    def after_train(self, runner) -> None:
        self.signals.restore()

    def after_train_iter(self,
                         runner,
                         batch_idx: int,
                         data_batch: Optional[Sequence] = None,
                         outputs: Optional[Mapping[str, Any]] = None) -> None:
        # The loop counts this iteration once the hooks are done.
        done = runner.iter + 1
        self._maybe_stop(runner, done, f'iter_{done}.pth', runner.epoch + 1)

    def after_val_iter(self,
                       runner,
                       batch_idx: int,
                       data_batch: Optional[Sequence] = None,
                       outputs: Optional[Sequence] = None) -> None:
        if not self.signals.installed:
            return  # not a validation inside training
        # Between epochs (or iteration-based, after one): the epoch is done.
        by_epoch = isinstance(runner.train_loop, EpochBasedTrainLoop)
        name = f'epoch_{runner.epoch}.pth' if by_epoch else \
            f'iter_{runner.iter}.pth'
        self._maybe_stop(runner, runner.iter, name, runner.epoch)

    def _received(self) -> int:
        """The signal any rank received (0: none), the same on every rank."""
        flag = torch.tensor([self.signals.received or 0])
        all_reduce(flag, op='max')  # nothing to do outside a process group
        return int(flag.item())

    def _maybe_stop(self, runner, done: int, filename: str,
                    epoch: int) -> None:
        """Stop after ``done`` iterations (in epoch ``epoch``, counted from
        1) if any rank received a stop signal."""
        signum = self._received()
        if not signum:
            return
        path = self._save(runner, done, filename)
        barrier()  # the checkpoint is whole before any rank leaves
        self.signals.restore()
        stop = TrainingStopped(
            signum=signum,
            checkpoint=path,
            iteration=done,
            started_at=self.started_at,
            max_requeues=self.max_requeues,
            rank=get_rank())
        where = f' (epoch {epoch})' if isinstance(runner.train_loop,
                                                  EpochBasedTrainLoop) else ''
        runner.logger.info(f'{stop}{where}')
        raise stop

    @staticmethod
    def _save(runner, done: int, filename: str) -> str:
        """Checkpoint the position after ``done`` iterations, unless the
        checkpoint hook has just saved it; its path."""
        hook = next((h for h in runner.hooks if isinstance(h, CheckpointHook)),
                    None)
        out_dir = hook.out_dir if hook is not None else runner.work_dir
        path = osp.join(out_dir, filename)
        if runner.message_hub.get_info('last_ckpt') == path and \
                osp.isfile(path):
            return path
        backend_args = (hook.backend_args if hook is not None else None) or \
            dict(ATOMIC_BACKEND_ARGS)
        # The position itself: mmengine's defaults assume the save comes
        # from the checkpoint hook's place in the loop.
        runner.save_checkpoint(
            out_dir,
            filename,
            meta=dict(epoch=runner.epoch, iter=done),
            backend_args=backend_args)
        runner.message_hub.update_info('last_ckpt', path)
        if is_main_process():
            write_text(osp.join(runner.work_dir, 'last_checkpoint'), path)
        return path


def _scalar(value: Any) -> Optional[float]:
    """A logged value as a float; None for what is not one number."""
    if isinstance(value, torch.Tensor):
        return float(value.detach()) if value.numel() == 1 else None
    return float(value) if isinstance(value, (int, float)) else None


@HOOKS.register_module()
class DeployHook(Hook):
    """Test the deploy form of the model: :func:`deploy` applied once the
    checkpoint is loaded, before the first test batch, then the backbone and
    neck in the precision asked for (:mod:`projects.res2net.models.precision`).

    ``tools/test.py --deploy [--precision bf16|int8]`` adds it, so that the
    AP of the deploy form is measured by the same test loop and metric as
    the trained model's. In a config: ``custom_hooks =
    [dict(type='DeployHook')]``.

    Args:
        fold_bn: Fold BatchNorm layers into convs.
        channels_last: Run in channels-last.
        compile: Compile the backbone and neck with ``torch.compile`` (bf16
            and int8 always are).
        precision: ``fp32``, ``bf16`` or ``int8``.
        int8_program: For int8, a program file written by
            ``tools/deployment/quantize.py`` for this checkpoint; without
            one the hook calibrates on ``calib_images`` train images first.
        calib_images: Calibration images when there is no program.
    """

    priority = 'VERY_LOW'  # after every hook that may touch the weights

    def __init__(self,
                 fold_bn: bool = True,
                 channels_last: bool = True,
                 compile: bool = False,
                 precision: str = 'fp32',
                 int8_program: Optional[str] = None,
                 calib_images: int = 32) -> None:
        if not (fold_bn or channels_last or compile or precision != 'fp32'):
            raise UserError('DeployHook with fold_bn, channels_last and '
                            'compile all off would test the model unchanged;'
                            ' turn one on or drop the hook')
        if precision not in PRECISIONS:
            raise UserError(f'DeployHook precision={precision!r}: use one '
                            f'of {", ".join(PRECISIONS)}')
        if int8_program is not None and precision != 'int8':
            raise UserError('an int8 program is for precision int8, not '
                            f'{precision}')
        self.options = dict(
            fold_bn=fold_bn,
            channels_last=channels_last,
            compile=compile and precision == 'fp32')
        self.precision = precision
        self.int8_program = int8_program
        self.calib_images = calib_images
        self.report: Optional[DeployReport] = None

    def before_test(self, runner) -> None:
        """Deploy the model whose checkpoint the Runner has just loaded."""
        self.report = deploy(runner.model, **self.options)
        model = runner.model.module if is_model_wrapper(
            runner.model) else runner.model
        program = None
        if self.precision == 'int8':
            program = int8_program_for(
                runner.cfg,
                model,
                checkpoint=runner.cfg.load_from,
                program=self.int8_program,
                calib_images=self.calib_images,
                log=runner.logger.info)
        done = to_precision(model, self.precision, program=program)
        summary = '; '.join(filter(None, [self.report.summary(), done]))
        runner.logger.info(f'deploy form: {summary}')
