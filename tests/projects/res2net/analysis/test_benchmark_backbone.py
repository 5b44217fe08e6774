# Copyright (c) Res2Net-MMDet contributors. All rights reserved.
"""projects/res2net/analysis/benchmark_backbone.py: the backbones compared,
the checks, the tables and the profile's kinds of op.

The timed runs themselves are tested through the tool
(tests/tools/analysis_tools/test_benchmark_backbone.py)."""
import math

import pytest
import torch
from mmdet.registry import MODELS

from projects.res2net.analysis.benchmark_backbone import (BackboneRun,
                                                          check_deployed,
                                                          check_modes, lineup,
                                                          op_kind, peak_run,
                                                          profile_table,
                                                          speed_table,
                                                          with_neck)
from projects.res2net.errors import UserError

# The roles, as the module names them (the keys of a lineup's labels).
RESNET, MMDET_R2, OURS, OURS_NCHW = ('resnet', 'mmdet-res2net', 'ours',
                                     'ours-nchw')


def test_backbone_configs_share_the_settings():
    configs = lineup('resnet', 50).configs
    assert list(configs) == [RESNET, MMDET_R2, OURS, OURS_NCHW]
    assert [c['type'] for c in configs.values()
            ] == ['ResNet', 'Res2Net', 'Res2NetBackbone', 'Res2NetBackbone']
    assert all(c['depth'] == 50 and c['init_cfg'] is None
               for c in configs.values())
    assert configs[OURS_NCHW] == dict(configs[OURS], cpu_channels_last=False)
    assert configs[OURS].get('cpu_channels_last', True)
    assert lineup('resnet').labels[OURS] == 'Res2NetBackbone-101'


def test_dla_lineup_is_the_same_network_with_the_plain_block():
    backbones = lineup('dla')
    configs = backbones.configs
    assert list(configs) == ['dla60', RESNET, OURS, 'ours-next', OURS_NCHW]
    assert [c['type'] for c in configs.values()
            ] == ['DLA', 'ResNet', 'Res2NetDLA', 'Res2NetDLA', 'Res2NetDLA']
    assert all(c['init_cfg'] is None for c in configs.values())
    plain, ours = configs['dla60'], configs[OURS]
    assert dict(plain, type='Res2NetDLA', scales=4, base_width=28) == ours
    assert (configs['ours-next']['groups'], configs[RESNET]['depth']) == (8,
                                                                          50)
    assert (backbones.baselines, backbones.eager) == (('dla60', RESNET),
                                                      'dla60')
    with pytest.raises(UserError, match='--depth 101 is for --family resnet'):
        lineup('dla', 101)
    with pytest.raises(UserError, match='no lineup'):
        lineup('vgg')


def test_training_has_no_deploy_modes():
    check_modes(['nchw', 'channels_last'], train=True)
    check_modes(['deploy', 'compiled', 'int8', 'bf16'], train=False)
    for mode in ('deploy', 'compiled', 'int8', 'bf16'):
        with pytest.raises(UserError, match='pass --modes nchw'):
            check_modes(['nchw', mode], train=True)


def test_a_deployed_model_off_eager_is_a_bug():
    check_deployed({'Res2NetBackbone-50 deploy': 1e-4})
    with pytest.raises(RuntimeError, match='differ from eager by 2.0e-04'):
        check_deployed({'Res2NetBackbone-50 deploy': 2e-4})
    # An FPN sums up to four levels.
    check_deployed({'Res2NetBackbone-50 deploy': 5e-4}, neck=True)
    with pytest.raises(RuntimeError, match='differ from eager by 6.0e-04'):
        check_deployed({'Res2NetBackbone-50 deploy': 6e-4}, neck=True)


def test_a_low_precision_model_that_points_elsewhere_is_a_bug():
    check_deployed({}, {'Res2NetBackbone-50 int8': 0.9})
    with pytest.raises(RuntimeError, match='at cosine 0.8900 to eager'):
        check_deployed({}, {'Res2NetBackbone-50 int8': 0.89})


def test_low_precisions_time_ours_and_the_plain_networks():
    """mmdet's Res2Net is weighed in fp32 only; every other backbone of a
    lineup gets its low-precision rows."""
    assert lineup('resnet', 50).low_precision == (RESNET, OURS)
    dla = lineup('dla')
    assert set(dla.low_precision) == set(dla.configs) - {OURS_NCHW}


def test_with_neck_reads_the_backbones_channels():
    backbone = MODELS.build(dict(type='ResNet', depth=18))
    dense = with_neck(backbone, torch.randn(1, 3, 64, 64))
    assert dense.neck.in_channels == [64, 128, 256, 512]
    assert len(dense.eval()(torch.randn(1, 3, 64, 64))) == 5


def test_peak_flops():
    _, flops = peak_run('cpu')
    assert flops == 2 * 1024 * 1024 * 64 * 64


@pytest.mark.parametrize('name, shapes, kind', [
    ('aten::mkldnn_convolution', [[1, 64, 8, 8], [64, 64, 1, 1]], '1x1 conv'),
    ('aten::mkldnn_convolution', [[1, 64, 8, 8], [64, 64, 3, 3]], '3x3 conv'),
    ('aten::convolution_backward', [[1, 64, 8, 8], [1, 64, 8, 8],
                                    [64, 64, 1, 1]], '1x1 conv'),
    ('aten::convolution_backward', [[1, 64, 8, 8], [1, 64, 8, 8],
                                    [64, 64, 7, 7]], '7x7 conv'),
    ('aten::_convolution', [], 'conv'),
    ('aten::native_batch_norm', [], 'BN'),
    ('aten::relu_', [], 'ReLU, add, mul'),
    ('aten::add_', [], 'ReLU, add, mul'),
    ('aten::cat', [], 'concatenation'),
    ('aten::copy_', [], 'copies'),
    ('aten::max_pool2d_with_indices', [], 'pooling'),
    ('aten::empty', [], 'other'),
])
def test_op_kinds(name, shapes, kind):
    assert op_kind(name, shapes) == kind


def test_profile_table_puts_the_costliest_kind_first():
    table = profile_table({
        'a nchw': {
            'BN': 1.0,
            '1x1 conv': 4.0
        },
        'b nchw': {
            '3x3 conv': 2.5
        },
    })
    assert table.splitlines() == [
        '| model | 1x1 conv | 3x3 conv | BN | total |',
        '|---|---|---|---|---|',
        '| a nchw | 4.0 | 0.0 | 1.0 | 5.0 |',
        '| b nchw | 0.0 | 2.5 | 0.0 | 2.5 |',
    ]


def test_speed_table_ratios():
    runs = [
        BackboneRun(RESNET, 'nchw', lambda: None, 1e9),
        BackboneRun(MMDET_R2, 'nchw', lambda: None, 2e9),
        BackboneRun(OURS, 'nchw', lambda: None, 2e9),
        BackboneRun(RESNET, 'deploy', lambda: None, 1e9),
        BackboneRun(MMDET_R2, 'deploy', lambda: None, 2e9),
        BackboneRun(OURS, 'deploy', lambda: None, 2e9),
    ]
    seconds = {
        (RESNET, 'nchw'): 0.1,
        (MMDET_R2, 'nchw'): 0.2,
        (OURS, 'nchw'): 0.16,
        (RESNET, 'deploy'): 0.05,
        (MMDET_R2, 'deploy'): 0.1,
        (OURS, 'deploy'): 0.08,
    }
    text, results = speed_table(
        runs, seconds, peak=100.0, train=False, backbones=lineup('resnet', 50))
    ours = results[5]
    assert ours['backbone'] == 'Res2NetBackbone-50'
    assert ours['mode'] == 'deploy'
    assert ours['median_ms'] == pytest.approx(80)
    assert ours['vs_resnet'] == pytest.approx(0.08 / 0.05)
    assert ours['vs_mmdet_res2net'] == pytest.approx(0.08 / 0.1)
    assert ours['vs_mmdet_res2net_nchw'] == pytest.approx(0.08 / 0.2)
    # 2 FLOPs per multiply-add.
    assert ours['gflops_per_s'] == pytest.approx(2 * 2e9 / 0.08 / 1e9)
    assert ours['of_peak'] == pytest.approx(ours['gflops_per_s'] / 100)
    assert text.splitlines()[0].startswith(
        '| backbone | mode | median ms | vs mmdet ResNet-50 |')
    assert text.splitlines()[-1] == ('| Res2NetBackbone-50 | deploy | 80.0 | '
                                     '1.60 | 0.80 | 0.40 | 50.0 | 50% |')

    # Training: forward + backward, about 3x a forward's FLOPs; without an
    # eager mmdet Res2Net the NCHW ratio is not a number.
    nchw_free = {k: v for k, v in seconds.items() if k[1] != 'nchw'}
    _, results = speed_table(
        runs[3:],
        nchw_free,
        peak=100.0,
        train=True,
        backbones=lineup('resnet', 50))
    assert results[2]['gflops_per_s'] == pytest.approx(3 * 2 * 2e9 / 0.08 /
                                                       1e9)
    assert math.isnan(results[2]['vs_mmdet_res2net_nchw'])


def test_speed_table_holds_low_precisions_to_their_own_peak():
    runs = [
        BackboneRun(OURS, 'compiled', lambda: None, 2e9),
        BackboneRun(OURS, 'int8', lambda: None, 2e9),
    ]
    seconds = {(OURS, 'compiled'): 0.1, (OURS, 'int8'): 0.05}
    text, results = speed_table(
        runs,
        seconds,
        peak=100.0,
        train=False,
        backbones=lineup('resnet', 50),
        chain_gops={
            'fp32': 50.0,
            'int8': 200.0
        })
    assert 'vs its fp32 compiled' in text.splitlines()[0]
    fp32, int8 = results
    assert int8['vs_compiled'] == pytest.approx(0.5)
    assert fp32['vs_compiled'] == pytest.approx(1.0)
    assert int8['of_peak'] == pytest.approx(2 * 2e9 / 0.05 / 1e9 / 200)
    # The fp32 rows keep the matmul peak.
    assert fp32['of_peak'] == pytest.approx(2 * 2e9 / 0.1 / 1e9 / 100)
