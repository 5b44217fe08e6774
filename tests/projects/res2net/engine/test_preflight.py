# Copyright (c) Res2Net-MMDet contributors. All rights reserved.
"""projects/res2net/engine/preflight.py: what train.py checks before the
Runner."""
import pytest
import torch
from mmdet.registry import MODELS
from mmengine.registry import Registry
from torch import nn

from projects.res2net.engine.cli import load_config
from projects.res2net.engine.preflight import (build_model,
                                               removed_on_early_failure)
from projects.res2net.errors import UserError

DEMO = 'configs/demo/faster_rcnn_r2_50_fpn_demo.py'


def test_an_unknown_argument_anywhere_names_its_path_and_the_likely_one(repo):
    cfg = load_config(str(repo / DEMO))
    cfg.model.rpn_head.anchor_generatr = cfg.model.rpn_head.pop(
        'anchor_generator')
    with pytest.raises(UserError) as err:
        build_model(cfg)
    assert ('model.rpn_head.anchor_generatr: RPNHead takes no argument '
            'anchor_generatr (did you mean anchor_generator?); fix the '
            'config or its --cfg-options') in str(err.value)


def test_a_bad_value_keeps_our_message(repo):
    cfg = load_config(str(repo / DEMO))
    cfg.model.backbone.scales = 1
    with pytest.raises(UserError, match=r'model: scales=1 is not supported'):
        build_model(cfg)


# A registry of this test's own, below mmdet's models: nothing of mmdet's
# is overridden or left behind.
_TEST_MODELS = Registry('model', parent=MODELS, scope='res2net_preflight_test')


@_TEST_MODELS.register_module()
class _ReadsItsValues(nn.Module):
    """A model that computes with its weights while it is built."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(3))
        if not self.scale.sum() > 0:  # no value on the meta device
            raise ValueError('scale must be positive')


def test_the_checked_model_has_shapes_but_no_values(repo):
    """Built on the meta device (no initialisation to pay for); a model
    that reads its values while built is built on the CPU instead."""
    cfg = load_config(str(repo / DEMO))
    model = build_model(cfg)
    weights = model.state_dict()
    assert {w.device.type for w in weights.values()} == {'meta'}
    reference = MODELS.build(cfg.model).state_dict()
    assert {k: w.shape for k, w in weights.items()} == \
        {k: w.shape for k, w in reference.items()}

    cfg.model = dict(type=f'{_TEST_MODELS.scope}._ReadsItsValues')
    model = build_model(cfg)
    assert model.scale.device.type == 'cpu'
    assert torch.equal(model.scale.detach(), torch.ones(3))


def test_an_early_failure_leaves_the_work_dir_as_it_was(tmp_path):
    new = tmp_path / 'new'
    with pytest.raises(RuntimeError):
        with removed_on_early_failure(str(new)):
            (new / '20261123_170000' / 'vis_data').mkdir(parents=True)
            (new / 'demo.py').write_text('config dump')
            raise RuntimeError('the dataset did not load')
    assert not new.exists()

    old = tmp_path / 'old'
    old.mkdir()
    (old / 'iter_2.pth').write_text('an earlier run')
    with pytest.raises(RuntimeError):
        with removed_on_early_failure(str(old)):
            (old / '20261123_170000').mkdir()
            (old / 'demo.py').write_text('config dump')
            raise RuntimeError('the first iteration failed')
    assert sorted(p.name for p in old.iterdir()) == ['iter_2.pth']


def test_a_failure_after_a_checkpoint_keeps_everything(tmp_path):
    with pytest.raises(RuntimeError):
        with removed_on_early_failure(str(tmp_path / 'wd')):
            (tmp_path / 'wd' / 'log').mkdir(parents=True)
            (tmp_path / 'wd' / 'iter_1000.pth').write_text('hours of work')
            raise RuntimeError('diverged')
    assert sorted(p.name for p in (tmp_path / 'wd').iterdir()) == \
        ['iter_1000.pth', 'log']


def test_the_checkpoint_to_resume_from(tmp_path):
    from projects.res2net.engine.preflight import latest_checkpoint
    assert latest_checkpoint(str(tmp_path / 'none')) is None
    assert latest_checkpoint(str(tmp_path)) is None
    for n in (2, 10, 4):
        (tmp_path / f'iter_{n}.pth').write_bytes(b'x')
    record = tmp_path / 'last_checkpoint'
    record.write_text(str(tmp_path / 'iter_4.pth'))
    assert latest_checkpoint(str(tmp_path)) == str(tmp_path / 'iter_4.pth')
    # Killed while mmengine rewrote it: empty, or naming a file now gone.
    record.write_text('')
    assert latest_checkpoint(str(tmp_path)) == str(tmp_path / 'iter_10.pth')
    record.write_text(str(tmp_path / 'iter_12.pth'))
    assert latest_checkpoint(str(tmp_path)) == str(tmp_path / 'iter_10.pth')
