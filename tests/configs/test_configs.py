# Copyright (c) Res2Net-MMDet contributors. All rights reserved.
"""The five R2-101 detector configs: settings, zoo compatibility, a run."""
import json

import pytest
import torch
from mmdet.registry import MODELS
from mmengine.config import Config
from mmengine.hub import get_config
from mmengine.registry import init_default_scope

from projects.res2net.zoo.table import demo_run_options

# Our config -> (the model-zoo config of the same detector in mmdet,
#                epochs, lr steps, evaluated tasks).
REFERENCE = {
    'faster_rcnn_r2_101_fpn_2x':
    ('res2net/faster-rcnn_res2net-101_fpn_2x_coco', 24, [16, 22], ['bbox']),
    'mask_rcnn_r2_101_fpn_2x': ('res2net/mask-rcnn_res2net-101_fpn_2x_coco',
                                24, [16, 22], ['bbox', 'segm']),
    'cascade_rcnn_r2_101_fpn_20e':
    ('res2net/cascade-rcnn_res2net-101_fpn_20e_coco', 20, [16, 19], ['bbox']),
    'cascade_mask_rcnn_r2_101_fpn_20e':
    ('res2net/cascade-mask-rcnn_res2net-101_fpn_20e_coco', 20, [16, 19],
     ['bbox', 'segm']),
    'htc_r2_101_fpn_20e':
    ('res2net/htc_res2net-101_fpn_20e_coco', 20, [16, 19], ['bbox', 'segm']),
}
NAMES = sorted(REFERENCE)
# Beyond the reference set: each is one of the above with another backbone.
BEYOND = {
    f'{name.replace("r2_101", "r2_50")}': (name, dict(depth=50))
    for name in NAMES
}
BEYOND.update({
    f'{name.replace("fpn", "fpn_dconv_c3_c5")}':
    (name,
     dict(
         dcn=dict(type='DCN', deform_groups=1, fallback_on_stride=False),
         stage_with_dcn=(False, True, True, True)))
    for name in ('cascade_mask_rcnn_r2_101_fpn_20e', 'htc_r2_101_fpn_20e')
})


def metrics_of(cfg: Config) -> list:
    metric = cfg.test_evaluator.metric
    return [metric] if isinstance(metric, str) else list(metric)


@pytest.mark.parametrize('name', NAMES)
def test_config_has_reference_settings(repo, name):
    _, epochs, steps, tasks = REFERENCE[name]
    cfg = Config.fromfile(repo / 'configs' / f'{name}.py')
    assert cfg.custom_imports.imports == ['projects.res2net']
    backbone = cfg.model.backbone
    assert backbone.type == 'Res2NetBackbone'
    assert (backbone.depth, backbone.scales, backbone.base_width) == (101, 4,
                                                                      26)
    assert (backbone.stem_type, backbone.avg_down) == ('deep', True)
    assert backbone.init_cfg == dict(
        type='Pretrained', checkpoint='open-mmlab://res2net101_v1d_26w_4s')
    assert cfg.train_cfg.max_epochs == epochs
    warmup, steps_cfg = cfg.param_scheduler
    assert (warmup.type, warmup.end, warmup.by_epoch) == ('LinearLR', 500,
                                                          False)
    assert steps_cfg.milestones == steps
    optimizer = cfg.optim_wrapper.optimizer
    assert (optimizer.type, optimizer.lr, optimizer.momentum,
            optimizer.weight_decay) == ('SGD', 0.02, 0.9, 1e-4)
    # 0.02 is for 16 images: 8 GPUs x 2.
    assert cfg.train_dataloader.batch_size == 2
    assert cfg.auto_scale_lr.base_batch_size == 16
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        assert cfg[loader].dataset.data_root == 'data/coco/'
    assert cfg.test_evaluator.ann_file.startswith('data/coco/')
    assert metrics_of(cfg) == tasks
    if name.startswith('htc'):
        assert cfg.train_dataloader.dataset.data_prefix.seg == \
            'stuffthingmaps/train2017/'


@pytest.mark.parametrize('name', NAMES)
def test_model_zoo_checkpoint_loads_strictly(repo, name):
    """Our detector has exactly the keys and shapes of mmdet's zoo model."""
    init_default_scope('mmdet')
    ours = Config.fromfile(repo / 'configs' / f'{name}.py').model
    zoo = get_config(f'mmdet::{REFERENCE[name][0]}.py').model
    assert zoo.backbone.type == 'Res2Net'
    ours_model, zoo_model = MODELS.build(ours), MODELS.build(zoo)
    # A zoo checkpoint is this state dict under `state_dict`.
    zoo_state = zoo_model.state_dict()
    result = ours_model.load_state_dict(zoo_state, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    assert all(v.shape == zoo_state[k].shape
               for k, v in ours_model.state_dict().items())
    with torch.no_grad():
        x = torch.rand(1, 3, 64, 64)
        ours_model.eval(), zoo_model.eval()
        for a, b in zip(ours_model.backbone(x), zoo_model.backbone(x)):
            assert (a - b).abs().max() <= 1e-5


@pytest.mark.parametrize('name', sorted(BEYOND))
def test_beyond_reference_configs_change_only_the_backbone(repo, name):
    base, changes = BEYOND[name]
    cfg = Config.fromfile(repo / 'configs' / f'{name}.py')
    reference = Config.fromfile(repo / 'configs' / f'{base}.py')
    expected = dict(reference.model.backbone, **changes)
    if 'depth' in changes:
        expected['init_cfg'] = dict(
            type='Pretrained',
            checkpoint='checkpoints/res2net50_v1b_26w_4s.pth')
    assert cfg.model.backbone == expected
    assert cfg.model.neck == reference.model.neck
    assert cfg.train_cfg == reference.train_cfg
    assert cfg.param_scheduler == reference.param_scheduler


def fewer_boxes(cfg: Config) -> list:
    """``--cfg-options`` for 100 proposals and 32 RoIs per image (and per
    cascade stage) instead of 1000-2000 and 512, and 10 detections per test
    image instead of 100: every head still runs, on fewer boxes. RoIAlign's
    backward over 512 RoIs per stage otherwise takes most of a CPU step (one
    HTC step: 14 s, with these 2.8 s), and HTC's test runs the mask heads of
    its three stages on every detection."""
    rcnn = cfg.model.train_cfg.rcnn
    stages = [f'.{i}'
              for i in range(len(rcnn))] if isinstance(rcnn,
                                                       (list,
                                                        tuple)) else ['']
    return [
        'model.train_cfg.rpn_proposal.max_per_img=100',
        'model.test_cfg.rpn.max_per_img=100',
        'model.test_cfg.rcnn.max_per_img=10'
    ] + [f'model.train_cfg.rcnn{stage}.sampler.num=32' for stage in stages]


@pytest.mark.parametrize('name', NAMES + sorted(BEYOND))
def test_config_trains_one_step_and_tests_on_demo_data(call_tool, repo,
                                                       tiny_demo_data,
                                                       tmp_path, name):
    config = f'configs/{name}.py'
    options = demo_run_options(str(tiny_demo_data)) + fewer_boxes(
        Config.fromfile(repo / config))
    train = call_tool('train.py', config, '--work-dir', tmp_path,
                      '--cfg-options', *options)
    assert train.returncode == 0, train.stderr[-3000:]
    assert 'Epoch(train) [1][1/1]' in train.stdout + train.stderr
    checkpoint = tmp_path / 'epoch_1.pth'
    assert checkpoint.is_file()

    test = call_tool('test.py', config, checkpoint, '--work-dir', tmp_path,
                     '--cfg-options', *options)
    assert test.returncode == 0, test.stderr[-3000:]
    metrics = json.loads((tmp_path / 'metrics.json').read_text())['metrics']
    base = BEYOND[name][0] if name in BEYOND else name
    for task in REFERENCE[base][3]:
        assert 0.0 <= metrics[f'coco/{task}_mAP'] <= 1.0
        assert f'| {task} |' in test.stdout
