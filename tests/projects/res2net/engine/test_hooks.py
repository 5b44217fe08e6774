# Copyright (c) Res2Net-MMDet contributors. All rights reserved.
"""projects/res2net/engine/hooks.py: reseeding by position, the non-finite
stop, the deploy form before testing.

The kill-and-resume run itself is tested where users meet it, in
tests/tools/test_train_test.py.
"""
import logging
import random
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from mmdet.registry import MODELS
from mmengine.logging import MessageHub
from mmengine.runner import EpochBasedTrainLoop, IterBasedTrainLoop

from projects.res2net.engine.hooks import (DeployHook, ExactResumeHook,
                                           FiniteLossHook, reseed)
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


def _bare(cls):
    """A loop object of ``cls`` without building one (only its type
    matters)."""
    return cls.__new__(cls)


@pytest.mark.parametrize('cls, loader, why', [
    (EpochBasedTrainLoop, dict(
        num_workers=2, persistent_workers=True), 'persistent loader workers'),
    (EpochBasedTrainLoop, dict(num_workers=2, persistent_workers=False), None),
    (EpochBasedTrainLoop, dict(num_workers=0), None),
    (IterBasedTrainLoop, dict(num_workers=0), 'in the main process'),
    (IterBasedTrainLoop, dict(num_workers=1, persistent_workers=True), None)
])
def test_the_set_ups_that_cannot_be_replayed_are_named(cls, loader, why):
    said = ExactResumeHook.inexact_resume(
        _bare(cls), dict(train_dataloader=loader))
    if why is None:
        assert said is None
    else:
        assert why in said and 'for an exact resume' in said


def _runner(iteration: int, last_ckpt=None) -> SimpleNamespace:
    hub = MessageHub.get_instance(f'test_hooks_{iteration}_{last_ckpt}')
    if last_ckpt:
        hub.update_info('last_ckpt', last_ckpt)
    return SimpleNamespace(iter=iteration, message_hub=hub)


def test_a_finite_loss_goes_on():
    FiniteLossHook().after_train_iter(
        _runner(4),
        0,
        outputs=dict(
            loss=torch.tensor(1.5, requires_grad=True),
            acc=torch.tensor(50.),
            loss_list=torch.zeros(3)))


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


def test_deploy_hook_deploys_the_loaded_model():
    backbone = MODELS.build(dict(type='Res2NetBackbone', depth=50))
    backbone.train()
    runner = SimpleNamespace(
        model=backbone, logger=logging.getLogger('deploy-test'))
    hook = DeployHook()
    hook.before_test(runner)
    assert hook.report.folded > 0 and not backbone.training
