# Copyright (c) Res2Net-MMDet contributors. All rights reserved.
"""projects/res2net/analysis/benchmark_train.py: the detectors compared, the
optimizer, the memory run's command, the table.

The timed steps and the memory runs themselves are tested through the tool
(tests/tools/analysis_tools/test_benchmark_train.py)."""
import sys

import pytest

from projects.res2net.analysis.benchmark_train import (OURS, OURS_CP,
                                                       configure_training,
                                                       memory_command,
                                                       model_configs,
                                                       synthetic_batch,
                                                       train_table)
from projects.res2net.engine.cli import load_config
from projects.res2net.errors import UserError
from projects.res2net.paths import TOOLS_DIR

DEMO_CONFIG = 'configs/demo/faster_rcnn_r2_50_fpn_demo.py'


@pytest.fixture(scope='module')
def demo_cfg(repo):
    return load_config(str(repo / DEMO_CONFIG))


def test_model_configs(demo_cfg):
    configs = model_configs(
        demo_cfg, with_cp=True, against=['resnet', 'mmdet-res2net'])
    assert list(configs) == [OURS, OURS_CP, 'resnet', 'mmdet-res2net']
    backbones = {name: cfg.model.backbone for name, cfg in configs.items()}
    assert [b['type'] for b in backbones.values()
            ] == ['Res2NetBackbone', 'Res2NetBackbone', 'ResNet', 'Res2Net']
    assert all(b['init_cfg'] is None for b in backbones.values())
    assert backbones[OURS_CP] == dict(backbones[OURS], with_cp=True)
    assert all(b['depth'] == 50 for b in backbones.values())
    # Each its own copy: the given config is left alone.
    assert demo_cfg.model.backbone.type == 'Res2NetBackbone'
    assert list(model_configs(demo_cfg, with_cp=False, against=[])) == [OURS]


def test_model_configs_need_a_res2net_backbone(demo_cfg):
    cfg = demo_cfg.copy()
    cfg.model.backbone = dict(type='ResNet', depth=50)
    with pytest.raises(UserError, match='backbone is ResNet, not Res2Net'):
        model_configs(cfg, with_cp=False, against=['resnet'])


@pytest.mark.parametrize('amp, wrapper', [(False, 'OptimWrapper'),
                                          (True, 'AmpOptimWrapper')])
def test_weights_do_not_move(demo_cfg, amp, wrapper):
    cfg = configure_training(demo_cfg.copy(), amp=amp)
    assert cfg.optim_wrapper.optimizer.lr == 0.0
    assert cfg.optim_wrapper.type == wrapper


def test_synthetic_batch(demo_cfg):
    batch = synthetic_batch(demo_cfg, batch=2, size=(64, 96), device='cpu')
    assert [tuple(i.shape) for i in batch['inputs']] == [(3, 64, 96)] * 2
    assert all(
        len(s.gt_instances) == 5 and 'masks' not in s.gt_instances
        for s in batch['data_samples'])


def test_the_memory_run_is_the_tool_again():
    command = memory_command('ours with_cp', ['cfg.py', '--batch', '1'])
    tool = TOOLS_DIR / 'analysis_tools' / 'benchmark_train.py'
    assert tool.is_file()
    assert command == [
        sys.executable,
        str(tool), 'cfg.py', '--batch', '1', '--memory-of', 'ours with_cp'
    ]


def test_table_with_and_without_memory():
    seconds = {OURS: 0.5, 'resnet': 0.4}
    text, results = train_table(seconds, {
        OURS: (1000.0, 'cpu_max_rss'),
        'resnet': (800.0, 'cpu_max_rss')
    })
    assert results[1] == dict(
        backbone='resnet',
        median_ms=pytest.approx(400),
        vs_ours=pytest.approx(0.8),
        peak_memory_mb=800.0,
        memory_vs_ours=pytest.approx(0.8))
    assert text.splitlines()[-1] == '| resnet | 400.0 | 0.80 | 800.0 | 0.80 |'

    text, results = train_table(seconds, {})
    assert results[0]['peak_memory_mb'] is None
    assert results[0]['memory_vs_ours'] is None
    assert text.splitlines()[-2:] == [
        '| ours | 500.0 | 1.00 | – | – |', '| resnet | 400.0 | 0.80 | – | – |'
    ]
