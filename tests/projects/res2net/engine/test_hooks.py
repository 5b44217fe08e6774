# Copyright (c) Res2Net-MMDet contributors. All rights reserved.
"""projects/res2net/engine/hooks.py: reseeding by position, the non-finite
stop, the checkpoint on a stop signal, the deploy form before testing.

A whole run stopped by a signal and resumed is in test_loops.py.

The kill-and-resume run itself is tested where users meet it, in
tests/tools/test_train_test.py.
"""
import logging
import random
import signal
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from mmdet.registry import MODELS
from mmengine.logging import MessageHub
from mmengine.runner import EpochBasedTrainLoop, IterBasedTrainLoop

from projects.res2net.engine.hooks import (DeployHook, ExactResumeHook,
                                           FiniteLossHook,
                                           SignalCheckpointHook, reseed)
from projects.res2net.engine.preemption import TrainingStopped
from projects.res2net.errors import NonFiniteLoss, UserError


def _draws() -> tuple:
    return (torch.rand(3).tolist(), np.random.rand(3).tolist(),
            [random.random() for _ in range(3)])


def test_reseed_is_a_function_of_seed_and_position():
    reseed(7, 1, 12)
    first = _draws()
    _draws()  # whatever was drawn in between
    reseed(7, 1, 12)
    assert _draws() == first
    for other in ((7, 1, 13), (7, 0, 12), (8, 1, 12)):
        reseed(*other)
        assert all(a != b for a, b in zip(_draws(), first)), other


class _Loader(SimpleNamespace):

    def __len__(self) -> int:
        return self.length


SET_UPS = [
    (EpochBasedTrainLoop, 4, dict(num_workers=2, persistent_workers=True),
     'persistent loader workers'),
    (EpochBasedTrainLoop, 4, dict(num_workers=2), None),
    (EpochBasedTrainLoop, 4, dict(num_workers=0), None),
    (EpochBasedTrainLoop, 6, dict(num_workers=0), 'in the main process'),
    (EpochBasedTrainLoop, 6, dict(num_workers=1), None),
    (IterBasedTrainLoop, 4, dict(num_workers=0), 'in the main process'),
    (IterBasedTrainLoop, 4, dict(num_workers=1, persistent_workers=True), None)
]


@pytest.mark.parametrize('streams', [False, True])
@pytest.mark.parametrize('cls, position, loader, why', SET_UPS)
def test_the_set_ups_that_cannot_be_replayed_are_named(cls, position, loader,
                                                       why, streams):
    loop = cls.__new__(cls)
    loop._iter = position  # an epoch is 4 iterations: 6 is mid-epoch
    # A stream per sample (tools/train.py) replays every set-up: the
    # sampler tags the indices, the dataset seeds from the tags.
    loop.dataloader = _Loader(
        length=4,
        sampler=SimpleNamespace(tags_samples=streams),
        batch_sampler=None,
        dataset=SimpleNamespace(seeds_samples=streams),
        **dict(dict(persistent_workers=False), **loader))
    said = ExactResumeHook.inexact_resume(loop)
    if why is None or streams:
        assert said is None
    else:
        assert why in said and 'for an exact resume train with ' \
            'tools/train.py' in said


def _runner(iteration: int, last_ckpt=None) -> SimpleNamespace:
    hub = MessageHub.get_instance(f'test_hooks_{iteration}_{last_ckpt}')
    if last_ckpt:
        hub.update_info('last_ckpt', last_ckpt)
    return SimpleNamespace(iter=iteration, message_hub=hub)


def test_a_finite_loss_goes_on():
    """Finite terms, however large, and values that are not one number
    (a count, a per-level list) let the run go on; the same step with one
    term made NaN stops it: the hook did read these outputs."""
    hook, runner = FiniteLossHook(), _runner(4)
    outputs = dict(
        loss=torch.tensor(1.5, requires_grad=True),
        loss_rpn_cls=torch.tensor(3e38),
        acc=torch.tensor(50.),
        num_gts=12,
        loss_list=torch.zeros(3))
    assert hook.after_train_iter(runner, 0, outputs=outputs) is None
    assert hook.after_train_iter(runner, 0) is None  # a step without any
    assert runner.iter == 4  # the run's position is left as it was
    outputs['loss_rpn_cls'] = torch.tensor(float('nan'))
    with pytest.raises(NonFiniteLoss, match='loss_rpn_cls=nan'):
        hook.after_train_iter(runner, 0, outputs=outputs)


def test_a_non_finite_loss_names_iteration_term_and_checkpoint():
    outputs = dict(
        loss=torch.tensor(float('inf')),
        loss_cls=torch.tensor(0.3),
        loss_bbox=torch.tensor(float('nan')))
    with pytest.raises(NonFiniteLoss) as err:
        FiniteLossHook().after_train_iter(
            _runner(9, 'work/iter_8.pth'), 0, outputs=outputs)
    assert str(err.value) == (
        'training diverged at iteration 10: loss=inf, loss_bbox=nan; lower '
        'the learning rate or clip the gradients (optim_wrapper.clip_grad), '
        'then resume from work/iter_8.pth')
    with pytest.raises(NonFiniteLoss, match='no checkpoint was saved'):
        FiniteLossHook().after_train_iter(_runner(0), 0, outputs=outputs)


def test_the_stop_comes_before_the_checkpoint_hook():
    from mmengine.hooks import CheckpointHook
    from mmengine.runner.priority import get_priority
    assert get_priority(FiniteLossHook.priority) < \
        get_priority(CheckpointHook.priority)
    # And the reseeding before every other hook that might draw.
    assert get_priority(ExactResumeHook.priority) == get_priority('VERY_HIGH')


def test_deploy_hook_needs_something_to_do():
    with pytest.raises(UserError, match='turn one on'):
        DeployHook(fold_bn=False, channels_last=False, compile=False)


@pytest.mark.parametrize('options, message', [
    (dict(precision='fp16'),
     "DeployHook precision='fp16': use one of fp32, bf16, int8"),
    (dict(precision='bf16', int8_program='model.int8.pt2'),
     'an int8 program is for precision int8, not bf16'),
])
def test_deploy_hook_refuses_a_precision_it_has_not(options, message):
    with pytest.raises(UserError) as err:
        DeployHook(**options)
    assert str(err.value) == message


def test_deploy_hook_deploys_the_loaded_model():
    backbone = MODELS.build(dict(type='Res2NetBackbone', depth=50))
    backbone.train()
    runner = SimpleNamespace(
        model=backbone, logger=logging.getLogger('deploy-test'))
    hook = DeployHook()
    hook.before_test(runner)
    assert hook.report.folded > 0 and not backbone.training


class _SavingRunner(SimpleNamespace):
    """What SignalCheckpointHook reads of a Runner at ``epoch`` and
    ``iteration`` of a ``loop`` class; saves are recorded."""

    def __init__(self, work_dir, loop=None, epoch=0, iteration=0):
        super().__init__(
            hooks=[],
            work_dir=str(work_dir),
            message_hub=MessageHub.get_instance(f'signal_{work_dir}'),
            logger=logging.getLogger('test_hooks'),
            saved=[],
            epoch=epoch,
            iter=iteration,
            train_loop=loop.__new__(loop) if loop else None)

    def save_checkpoint(self, out_dir, filename, meta, backend_args):
        self.saved.append((filename, meta, backend_args))
        Path(out_dir, filename).write_bytes(b'checkpoint')


def test_a_signal_in_validation_stops_at_the_epoch_s_checkpoint(tmp_path):
    hook = SignalCheckpointHook()
    runner = _SavingRunner(tmp_path, EpochBasedTrainLoop, epoch=2, iteration=8)
    hook.before_train(runner)
    try:
        hook.after_val_iter(runner, 0)  # no signal: nothing happens
        assert runner.saved == []
        hook.signals.received = signal.SIGUSR1
        with pytest.raises(TrainingStopped) as stopped:
            hook.after_val_iter(runner, 0)
    finally:
        hook.signals.restore()
    epoch = str(tmp_path / 'epoch_2.pth')
    assert stopped.value.checkpoint == epoch
    assert (stopped.value.iteration, stopped.value.started_at) == (8, 8)
    # Saved whole (atomically), at the position itself, and named.
    assert runner.saved == [('epoch_2.pth', dict(epoch=2, iter=8),
                             dict(backend='atomic_local'))]
    assert (tmp_path / 'last_checkpoint').read_text() == epoch
    assert not hook.signals.installed


def test_a_checkpoint_just_saved_is_not_saved_again(tmp_path):
    hook = SignalCheckpointHook()
    runner = _SavingRunner(tmp_path, IterBasedTrainLoop, iteration=3)
    path = tmp_path / 'iter_4.pth'
    path.write_bytes(b'saved by CheckpointHook')
    runner.message_hub.update_info('last_ckpt', str(path))
    hook.signals.received = signal.SIGTERM
    with pytest.raises(TrainingStopped) as stopped:
        hook.after_train_iter(runner, 3)
    assert stopped.value.checkpoint == str(path)
    assert runner.saved == []


def test_outside_training_validation_is_left_alone(tmp_path):
    """A validation or test run (the hook's signals never installed) is not
    stopped by a signal, and nothing is saved; the same call inside
    training stops."""
    hook = SignalCheckpointHook()
    runner = _SavingRunner(tmp_path, EpochBasedTrainLoop, epoch=1, iteration=4)
    hook.signals.received = signal.SIGTERM  # not installed: not training
    assert hook.after_val_iter(runner, 0) is None
    assert runner.saved == [] and list(tmp_path.iterdir()) == []
    assert not hook.signals.installed
    hook.before_train(runner)
    try:
        hook.signals.received = signal.SIGTERM
        with pytest.raises(TrainingStopped):
            hook.after_val_iter(runner, 0)
    finally:
        hook.signals.restore()
    assert [name for name, _, _ in runner.saved] == ['epoch_1.pth']


@pytest.mark.parametrize('value', [-1, 1.5, '3'])
def test_max_requeues_is_a_count(value):
    with pytest.raises(
            UserError,
            match=f'max_requeues={value!r}: not a '
            r'number of requeues \(0 or more\)'):
        SignalCheckpointHook(max_requeues=value)
