# Copyright (c) Res2Net-MMDet contributors. All rights reserved.
"""projects/res2net/analysis/flops.py: the count against mmdet's model zoo,
the input shape, the table."""
import pytest

from projects.res2net.analysis import flops
from projects.res2net.analysis.flops import (count_flops, count_flops_on_data,
                                             flops_table, image_shape)
from projects.res2net.engine.cli import load_config
from projects.res2net.errors import UserError

# mmdet's model zoo, Faster R-CNN with FPN, 2x, at 1280x800 (GFLOPs).
ZOO_R2_101 = 293.7
ZOO_R_101 = 283.1


def test_res2net_vs_resnet_matches_the_model_zoo(repo, tmp_path):
    """R2-101 vs R-101 Faster R-CNN: the difference the model zoo reports.

    The whole detector at 1280x800 takes minutes to trace on 2 cores, so
    this counts at 160x256, 1/25 of the pixels: the backbone's count scales
    exactly with the pixels (every side divides by 32), and the heads of the
    two detectors are the same, so the detectors differ by the backbones'
    difference alone. At 1280x800 the tool gives 293.21 and 282.77 GFLOPs
    (see the module's docstring); here the same follows from the small
    shape.
    """
    r101 = tmp_path / 'faster_rcnn_r101_fpn_2x.py'
    r101.write_text(
        "_base_ = 'mmdet::faster_rcnn/faster-rcnn_r101_fpn_2x_coco.py'\n")
    res2net = count_flops(
        load_config(str(repo / 'configs/faster_rcnn_r2_101_fpn_2x.py')), 160,
        256)
    resnet = count_flops(load_config(str(r101)), 160, 256)

    # The backbones' sizes without the 1000-class head: ResNet-101 is
    # torchvision's 44.55 M less 2.05 M of fc; Res2Net-v1b-101 the paper's
    # 45.23 M less the same head.
    head = 2048 * 1000 + 1000
    assert resnet['backbone']['params'] == 44_549_160 - head
    assert (res2net['backbone']['params'] + head) / 1e6 == pytest.approx(
        45.23, abs=0.01)

    # Same heads, same proposals: the detectors differ by the backbones.
    assert res2net['num_proposals'] == resnet['num_proposals'] == 1000
    extra = res2net['detector']['flops'] - resnet['detector']['flops']
    assert extra == pytest.approx(
        res2net['backbone']['flops'] - resnet['backbone']['flops'], rel=1e-6)

    # Scaled to 1280x800: about the model zoo's 10.6 GFLOPs more, and the
    # model zoo's ratio (1.0374; measured 1.0369) within 0.2 %.
    extra_full = 25 * extra / 1e9
    assert extra_full == pytest.approx(ZOO_R2_101 - ZOO_R_101, rel=0.05)
    assert (ZOO_R_101 + extra_full) / ZOO_R_101 == pytest.approx(
        ZOO_R2_101 / ZOO_R_101, rel=0.002)
    # The backbones alone: Res2Net-101 costs 6.5 % more than ResNet-101.
    ratio = res2net['backbone']['flops'] / resnet['backbone']['flops']
    assert ratio == pytest.approx(170.27 / 159.83, rel=0.002)


def test_dla_detector_counts_its_backbone_as_the_size_table(repo):
    """get_flops on the Res2Net-DLA-60 detector counts the backbone the
    variant table measures: 4.147 G multiply-adds at 224² with the 1000-class
    head (mmengine on the official code), here without the head, and its
    parameters with the never-run projections (kept for strict loading)."""
    counts = count_flops(
        load_config(str(repo / 'configs/faster_rcnn_r2_dla60_fpn_1x.py')), 224,
        224)
    head_macs, head_params = 1024 * 1000, 1024 * 1000 + 1000
    assert (counts['backbone']['flops'] + head_macs) / 1e9 == pytest.approx(
        4.147, abs=0.001)
    assert (counts['backbone']['params'] + head_params) / 1e6 == pytest.approx(
        21.146, abs=0.001)
    assert counts['detector']['flops'] > counts['backbone']['flops']


@pytest.mark.parametrize('shape, expected', [([128], (128, 128)),
                                             ([800, 1280], (800, 1280))])
def test_image_shape(shape, expected):
    assert image_shape(shape) == expected


@pytest.mark.parametrize('shape', [[1, 2, 3], [], [0], [800, -1]])
def test_image_shape_names_the_fix(shape):
    with pytest.raises(UserError, match='give H W or one number'):
        image_shape(shape)


def test_table_without_a_backbone():
    result = dict(
        input_shape=[1, 3, 64, 96],
        detector=dict(params=1_234_567, flops=2_345_678_901),
        backbone=None)
    assert flops_table(result).splitlines() == [
        '| part | input shape | params (M) | FLOPs (G) |',
        '|---|---|---|---|',
        '| detector | 1x3x64x96 | 1.235 | 2.346 |',
        '| backbone | 1x3x64x96 | – | – |',
    ]


def test_table_of_images_of_several_sizes():
    """--num-images over images padded to different sizes: the mean."""
    result = dict(
        input_shape=None,
        num_images=3,
        detector=dict(params=1_000_000, flops=2_000_000_000),
        backbone=dict(params=500_000, flops=1_000_000_000))
    assert flops_table(result).splitlines()[2:] == [
        '| detector | mean of 3 images | 1.000 | 2.000 |',
        '| backbone | mean of 3 images | 0.500 | 1.000 |',
    ]


def test_count_on_data_is_the_mean_over_the_images_there(
        repo, tiny_demo_data, monkeypatch):
    """--num-images 5 on a validation set of 2: both counted, their mean
    (each image's count stubbed: the tracer is tested above)."""
    counts = iter([10, 31])

    def count(detector, inputs, data_samples):
        flops = next(counts)
        return dict(
            detector=dict(params=7, flops=flops),
            backbone=dict(params=3, flops=flops // 10))

    monkeypatch.setattr(flops, 'count_detector', count)
    cfg = load_config(
        str(repo / 'configs/demo/faster_rcnn_r2_50_fpn_demo.py'),
        dict(data_root=f'{tiny_demo_data}/'))
    result = count_flops_on_data(cfg, 5)
    assert result['num_images'] == 2
    assert result['detector'] == dict(params=7, flops=20)  # 20.5, rounded
    assert result['backbone'] == dict(params=3, flops=2)
    assert result['input_shape'] == [1, 3, 128, 128]
    with pytest.raises(UserError, match='at least one image'):
        count_flops_on_data(cfg, 0)
