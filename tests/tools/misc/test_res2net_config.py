# Copyright (c) Res2Net-MMDet contributors. All rights reserved.
"""tools/misc/res2net_config.py: a written config trains a step; refusals
and the no-op are one line and write nothing.

Which settings the maker keeps on bases of every shape is tested with the
module (tests/projects/res2net/zoo/test_config_maker.py); the committed
configs it made train and test in tests/configs/test_configs.py."""
from mmengine.config import Config

from projects.res2net.zoo.table import demo_run_options

TOOL = 'misc/res2net_config.py'
DCN = 'mmdet::dcn/faster-rcnn_r50-dconv-c3-c5_fpn_1x_coco.py'


def test_a_dcn_detector_made_res2net_trains_a_step(call_tool, tiny_demo_data,
                                                   tmp_path):
    out = tmp_path / 'configs' / 'faster_rcnn_r2_50_dconv.py'
    result = call_tool(TOOL, DCN, '--variant', 'res2net50_v1b_26w_4s', '--out',
                       out)
    assert result.returncode == 0, result.stderr[-3000:]
    assert ('model.backbone: ResNet-50 -> Res2NetBackbone '
            '(res2net50_v1b_26w_4s); kept: ') in result.stdout
    assert 'dcn, stage_with_dcn' in result.stdout
    assert 'ImageNet weights: checkpoints/res2net50_v1b_26w_4s.pth' in \
        result.stdout
    cfg = Config.fromfile(str(out))
    assert cfg.model.backbone.type == 'Res2NetBackbone'
    assert cfg.model.backbone.stage_with_dcn == (False, True, True, True)

    options = demo_run_options(
        str(tiny_demo_data), model=cfg.model) + [
            'model.train_cfg.rpn_proposal.max_per_img=100',
            'model.train_cfg.rcnn.sampler.num=32'
        ]
    train = call_tool('train.py', out, '--work-dir', tmp_path / 'run',
                      '--cfg-options', *options)
    assert train.returncode == 0, train.stderr[-3000:]
    assert 'Epoch(train) [1][1/1]' in train.stdout + train.stderr
    assert (tmp_path / 'run' / 'epoch_1.pth').is_file()


def test_refusals_are_one_line_and_write_nothing(call_tool, tmp_path):
    out = tmp_path / 'x.py'
    for base, variant, words in (
        ('mmdet::swin/mask-rcnn_swin-t-p4-w7_fpn_1x_coco.py',
         'res2net101_v1b_26w_4s', 'is SwinTransformer, not a ResNet'),
        ('mmdet::retinanet/retinanet_r50_fpn_1x_coco.py', 'res2next_dla60',
         'res2next_dla60 is a Res2NetDLA, with 128-1024 channels'),
        (str(tmp_path / 'missing.py'), 'res2net50_v1b_26w_4s',
         'base config not found'),
    ):
        result = call_tool(TOOL, base, '--variant', variant, '--out', out)
        assert result.returncode == 2, (base, result.stdout)
        assert words in result.stderr.strip().splitlines()[-1]
        assert not out.exists()


def test_a_res2net_base_is_a_no_op(call_tool, tmp_path):
    out = tmp_path / 'x.py'
    result = call_tool(
        TOOL, 'mmdet::res2net/faster-rcnn_res2net-101_fpn_2x_coco.py',
        '--variant', 'res2net101_v1b_26w_4s', '--out', out)
    assert result.returncode == 0, result.stderr[-3000:]
    assert 'model.backbone already is Res2Net: nothing to swap' in \
        result.stdout
    assert not out.exists()
