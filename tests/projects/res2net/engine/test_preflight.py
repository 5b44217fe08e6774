# Copyright (c) Res2Net-MMDet contributors. All rights reserved.
"""projects/res2net/engine/preflight.py: what train.py checks before the
Runner."""
import copy
import functools
from pathlib import Path

import pytest
import torch
from mmdet.registry import MODELS
from mmengine.config import Config
from mmengine.registry import Registry
from torch import nn

from projects.res2net.engine.cli import load_config, parse_cfg_options
from projects.res2net.engine.forked import run_script
from projects.res2net.engine.preflight import (build_model, check_settings,
                                               check_types,
                                               removed_on_early_failure)
from projects.res2net.errors import UserError

DEMO = 'configs/demo/faster_rcnn_r2_50_fpn_demo.py'
REPO = Path(__file__).resolve().parents[4]


@functools.lru_cache(maxsize=None)
def _demo() -> Config:
    return load_config(str(REPO / DEMO))


def _demo_with(*options: str) -> Config:
    """The demo config with ``--cfg-options``, parsed as the tools parse
    them (read once per process: each test changes a copy)."""
    cfg = copy.deepcopy(_demo())
    cfg.merge_from_dict(parse_cfg_options(options))
    return cfg


# --cfg-options -> what the one line says after the key and its value.
_INTEGER = 'must be an integer >= 1, e.g. '
_REFUSED = [
    ('train_dataloader.batch_size=0', _INTEGER + 'train_dataloader.'
     'batch_size=2'),
    ('train_dataloader.batch_size=-2', _INTEGER + 'train_dataloader.'
     'batch_size=2'),
    ('val_dataloader.batch_size=1.5', _INTEGER + 'val_dataloader.'
     'batch_size=2'),
    ('test_dataloader.batch_size=two', _INTEGER + 'test_dataloader.'
     'batch_size=2'),
    ('train_dataloader.num_workers=-1', 'must be an integer >= 0, e.g. '
     'train_dataloader.num_workers=2'),
    ('train_dataloader.num_workers=1.0', 'must be an integer >= 0'),
    # mmdet's val loader keeps its workers alive: torch refuses that
    # without workers, at the first validation.
    ('val_dataloader.num_workers=0', 'must be False while num_workers is 0'
     ' (torch keeps workers alive only where there are some), e.g. '
     'val_dataloader.persistent_workers=False'),
    ('train_cfg.max_iters=0', _INTEGER + 'train_cfg.max_iters=1000'),
    ('train_cfg.max_iters=1e3', _INTEGER + 'train_cfg.max_iters=1000'),
    ('train_cfg.max_epochs=-1', _INTEGER + 'train_cfg.max_epochs=12'),
    ('train_cfg.val_interval=0', _INTEGER + 'train_cfg.val_interval=1'),
    ('default_hooks.logger.interval=0', _INTEGER + 'default_hooks.logger.'
     'interval=50'),
    ('default_hooks.checkpoint.interval=0', 'must be an integer >= 1, or -1 '
     'for no checkpoint but the last, e.g. default_hooks.checkpoint.'
     'interval=1'),
    ('default_hooks.checkpoint.interval=2.5', 'must be an integer >= 1, or '
     '-1'),
    ('optim_wrapper.optimizer.lr=0', 'must be a finite number > 0, e.g. '
     'optim_wrapper.optimizer.lr=0.02'),
    ('optim_wrapper.optimizer.lr=-0.01', 'must be a finite number > 0'),
    ('optim_wrapper.optimizer.lr=nan', 'must be a finite number > 0'),
    ('optim_wrapper.optimizer.lr=inf', 'must be a finite number > 0'),
    ('optim_wrapper.optimizer.lr=fast', 'must be a finite number > 0'),
    ('optim_wrapper.optimizer.lr=True', 'must be a finite number > 0'),
    ('param_scheduler.0.begin=-1', 'must be an integer >= 0, e.g. '
     'param_scheduler.0.begin=0'),
    ('param_scheduler.1.end=0', 'must be an integer > its begin (0), e.g. '
     'param_scheduler.1.end=1'),
    ('param_scheduler.1.milestones=320', 'must be a list of integers >= 0 '
     '(epochs or iterations, as its by_epoch says), e.g. '
     'param_scheduler.1.milestones=[8,11]'),
    ('param_scheduler.1.milestones=[320.5]', 'must be a list of integers'),
    ('train_dataloader.dataset.pipeline.2.scale=[128,128]',
     'must be a positive integer or a tuple of two (width, height), e.g. '
     'train_dataloader.dataset.pipeline.2.scale=(1333,800)'),
    ('train_dataloader.dataset.pipeline.2.scale=128,128', 'must be a '
     'positive integer or a tuple of two'),
    ('test_dataloader.dataset.pipeline.1.scale=(128,0)', 'must be a '
     'positive integer or a tuple of two'),
    ('val_dataloader.dataset.pipeline.1.scale=(128.5,128)', 'must be a '
     'positive integer or a tuple of two'),
    ('val_dataloader.dataset.pipeline.1.scale=0', 'must be a positive '
     'integer or a tuple of two'),
]


@pytest.mark.parametrize('option, says', _REFUSED)
def test_a_number_out_of_range_is_one_line_with_a_valid_value(option, says):
    cfg = _demo_with(option)
    key, value = option.split('=', 1)
    with pytest.raises(UserError) as err:
        check_settings(cfg)
    message = str(err.value)
    assert message.startswith(f'{cfg.filename}: ')
    assert message.endswith('; fix the config or its --cfg-options')
    assert '\n' not in message
    found = parse_cfg_options([option])[key]
    if 'persistent_workers' in says:
        key, found = key.replace('num_workers', 'persistent_workers'), True
    assert f': {key}={found!r}: {says}' in message
    # train.py and test.py check them with the types, before the Runner.
    with pytest.raises(UserError, match='must be'):
        check_types(cfg)


@pytest.mark.parametrize('options', [
    (),
    ('default_hooks.checkpoint.interval=-1', ),
    ('train_dataloader.num_workers=0',
     'train_dataloader.persistent_workers=False'),
    ('train_dataloader.dataset.pipeline.2.scale=128', ),
    ('train_dataloader.dataset.pipeline.2.scale=(1333, 800)', ),
    ('optim_wrapper.optimizer.lr=1e-3', ),
    ('param_scheduler.1.milestones=[]', ),
    ('param_scheduler.0.begin=10', 'param_scheduler.0.end=11'),
])
def test_valid_numbers_pass(options):
    check_settings(_demo_with(*options))


def test_an_absent_or_emptied_part_is_not_checked():
    cfg = _demo_with()
    cfg.val_dataloader = None
    cfg.param_scheduler = dict(type='ConstantLR', factor=0.5)
    cfg.default_hooks.pop('checkpoint')
    check_settings(cfg)


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


DYNAMO_SCRIPT = '''
import sys
from projects.res2net.engine.cli import load_config
from projects.res2net.engine.preflight import build_model
build_model(load_config(sys.argv[1]))
print('torch._dynamo' in sys.modules)
'''


def test_the_checked_model_draws_nothing(repo, tmp_path):
    """On the meta device a draw into a parameter runs PyTorch's Python
    reference code, whose first use imports TorchDynamo (0.6 s of CPU in a
    test.py process, which never compiles): the check draws nothing. In a
    process of its own, forked from one that imported mmdet, not Dynamo."""
    script, log = tmp_path / 'check.py', tmp_path / 'out.log'
    script.write_text(DYNAMO_SCRIPT)
    assert run_script(
        str(script), [str(repo / DEMO)], log=str(log)) == 0, log.read_text()
    assert log.read_text().splitlines()[-1] == 'False'


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
