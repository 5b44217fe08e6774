# Copyright (c) Res2Net-MMDet contributors. All rights reserved.
"""projects/res2net/analysis/benchmark_inference.py: the deploy forms detect
the same, the test data, the work dir."""
import copy

import pytest
import torch
from mmengine.config import Config

from projects.res2net.analysis.benchmark_inference import (build_test_loader,
                                                           endless,
                                                           inference_step,
                                                           resize_note,
                                                           to_deploy_form,
                                                           work_dir_of)
from projects.res2net.engine.cli import build_detector, load_config
from projects.res2net.errors import UserError

DEMO_CONFIG = 'configs/demo/faster_rcnn_r2_50_fpn_demo.py'
# 100 proposals instead of 1000: the box head dominates on a CPU.
FAST = {'model.test_cfg.rpn.max_per_img': 100}


def test_fused_and_channels_last_detect_the_same(repo, tiny_demo_data,
                                                 condition_detector):
    cfg = load_config(
        str(repo / DEMO_CONFIG), dict(data_root=f'{tiny_demo_data}/', **FAST))
    base = condition_detector(build_detector(cfg))
    batches = list(build_test_loader(cfg))

    def detect(fuse: bool, channels_last: bool) -> list:
        model, report = to_deploy_form(
            copy.deepcopy(base), 'cpu', fuse=fuse, channels_last=channels_last)
        assert report.left == 0 if fuse else report.folded == 0
        with torch.no_grad():
            return [
                inference_step(model, data, channels_last=channels_last)[0]
                for data in batches
            ]

    reference = detect(False, False)
    assert all(len(r.pred_instances) > 10 for r in reference)
    for fuse, channels_last in ((True, False), (False, True), (True, True)):
        for ref, res in zip(reference, detect(fuse, channels_last)):
            ref, res = ref.pred_instances, res.pred_instances
            assert torch.equal(res.labels, ref.labels)
            # Float rounding only: 1e-6 of a score, 1e-4 of a pixel here.
            torch.testing.assert_close(
                res.scores, ref.scores, rtol=0, atol=1e-4)
            torch.testing.assert_close(
                res.bboxes, ref.bboxes, rtol=0, atol=1e-2)


def test_endless_cycles_a_small_loader():
    batches = endless([1, 2])
    assert [next(batches) for _ in range(5)] == [1, 2, 1, 2, 1]


def test_endless_on_no_images_names_the_fix():
    with pytest.raises(UserError, match='the test dataset has no images'):
        next(endless([]))


def test_resize_note_reads_wrapped_datasets():
    pipeline = [
        dict(type='LoadImageFromFile'),
        dict(type='Resize', scale=(1333, 800), keep_ratio=True),
        dict(
            type='MultiScaleFlipAug',
            transforms=[dict(type='RandomResize', scale_factor=0.5)]),
    ]
    cfg = Config(
        dict(
            test_dataloader=dict(
                dataset=dict(
                    type='ClassBalancedDataset',
                    dataset=dict(type='CocoDataset', pipeline=pipeline)))))
    assert resize_note(cfg) == ('Resize(scale=(1333, 800), keep_ratio=True), '
                                'RandomResize(scale=0.5, keep_ratio=False)')
    cfg.test_dataloader.dataset.dataset.pipeline = pipeline[:1]
    assert resize_note(cfg) == 'no resize in the test pipeline'


def test_work_dir_follows_mmdets_rule():
    config = 'configs/faster_rcnn_r2_101_fpn_2x.py'
    assert work_dir_of(config, Config(dict(work_dir='cfg')), 'arg') == 'arg'
    assert work_dir_of(config, Config(dict(work_dir='cfg'))) == 'cfg'
    assert work_dir_of(config, Config()) == \
        './work_dirs/faster_rcnn_r2_101_fpn_2x'
