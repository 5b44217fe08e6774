# Copyright (c) Res2Net-MMDet contributors. All rights reserved.
"""The detector configs: the five R2-101 ones (settings, zoo compatibility),
those beyond them (R2-50, DCN, Res2Net-DLA, and those made by
tools/misc/res2net_config.py for other mmdet detectors), and a run of each.
"""
import json
import math
import os.path as osp

import pytest
import torch
from mmdet.registry import MODELS
from mmengine.config import Config
from mmengine.hub import get_config
from mmengine.registry import init_default_scope

from projects.res2net.engine.logs import (SCALARS_JSON, read_scalars, run_dirs,
                                          scalars_path)
from projects.res2net.models.variants import backbone_type, variant_kwargs
from projects.res2net.zoo.config_maker import config_text, load_base, plan_swap
from projects.res2net.zoo.table import demo_run_options, rcnn_train_keys

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

# The Res2Net-DLA configs: config -> (the variant of its backbone, the mmdet
# config it is written on, evaluated tasks).
DLA = {
    'faster_rcnn_r2_dla60_fpn_1x':
    ('res2net_dla60', 'faster_rcnn/faster-rcnn_r50_fpn_1x_coco', ['bbox']),
    'retinanet_r2_dla60_fpn_1x':
    ('res2net_dla60', 'retinanet/retinanet_r50_fpn_1x_coco', ['bbox']),
    'faster_rcnn_r2x_dla60_fpn_1x':
    ('res2next_dla60', 'faster_rcnn/faster-rcnn_r50_fpn_1x_coco', ['bbox']),
}

# Made by tools/misc/res2net_config.py: config -> (its mmdet base, tasks).
MADE_VARIANT = 'res2net101_v1b_26w_4s'
MADE = {
    'retinanet_r2_101_fpn_1x':
    ('mmdet::retinanet/retinanet_r50_fpn_1x_coco.py', ['bbox']),
    'fcos_r2_101_fpn_gn_head_1x':
    ('mmdet::fcos/fcos_r50-caffe_fpn_gn-head_1x_coco.py', ['bbox']),
    'atss_r2_101_fpn_1x': ('mmdet::atss/atss_r50_fpn_1x_coco.py', ['bbox']),
    'dino_4scale_r2_101_12e':
    ('mmdet::dino/dino-4scale_r50_8xb2-12e_coco.py', ['bbox']),
    'mask2former_r2_101_lsj_50e':
    ('mmdet::mask2former/mask2former_r50_8xb2-lsj-50e_coco.py',
     ['bbox', 'segm']),
}


def tasks_of(name: str) -> list:
    """The tasks a config of ours is evaluated on."""
    if name in MADE:
        return MADE[name][1]
    if name in DLA:
        return DLA[name][2]
    return REFERENCE[BEYOND[name][0] if name in BEYOND else name][3]


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
    """The whole config is its reference's (model, data, schedule, hooks)
    but for the backbone's changes: an R2-50 one trains as its R2-101
    reference does (see :data:`ONE_STEP`)."""
    base, changes = BEYOND[name]
    cfg = Config.fromfile(repo / 'configs' / f'{name}.py').to_dict()
    reference = Config.fromfile(repo / 'configs' / f'{base}.py').to_dict()
    expected = dict(reference['model']['backbone'], **changes)
    if 'depth' in changes:
        expected['init_cfg'] = dict(
            type='Pretrained',
            checkpoint='checkpoints/res2net50_v1b_26w_4s.pth')
    assert cfg['model'].pop('backbone') == expected
    reference['model'].pop('backbone')
    assert cfg == reference


def unscoped(node):
    """A config node without the ``_scope_`` keys that ``get_config`` adds
    to what it loads."""
    if isinstance(node, dict):
        return {k: unscoped(v) for k, v in node.items() if k != '_scope_'}
    if isinstance(node, (list, tuple)):
        return [unscoped(v) for v in node]
    return node


@pytest.mark.parametrize('name', sorted(DLA))
def test_dla_configs_swap_only_the_backbone(repo, name):
    """The mmdet config with the variant's backbone (its converted ImageNet
    weights from a local file) and the FPN taking its channels."""
    variant, base, tasks = DLA[name]
    init_default_scope('mmdet')
    cfg = Config.fromfile(repo / 'configs' / f'{name}.py')
    reference = get_config(f'mmdet::{base}.py')
    backbone = cfg.model.backbone
    assert backbone.type == backbone_type(variant) == 'Res2NetDLA'
    assert variant_kwargs(variant).items() <= dict(backbone).items()
    assert backbone.init_cfg == dict(
        type='Pretrained', checkpoint=f'checkpoints/{variant}.pth')
    assert (backbone.norm_eval,
            backbone.norm_cfg) == (True, dict(type='BN', requires_grad=True))
    model = MODELS.build(dict(backbone, init_cfg=None))
    assert cfg.model.neck.in_channels == [
        model.channels[i] for i in backbone.out_indices
    ]
    # Everything else is mmdet's; the evaluator is mmdet's CocoMetric with
    # faster-coco-eval's COCOeval, its settings the base's.
    for key in ('train_cfg', 'param_scheduler', 'optim_wrapper',
                'train_dataloader'):
        assert unscoped(cfg[key]) == unscoped(reference[key]), key
    ours, theirs = (dict(unscoped(c.test_evaluator)) for c in (cfg, reference))
    assert (ours.pop('type'), theirs.pop('type')) == \
        ('FasterCocoMetric', 'CocoMetric')
    assert ours == theirs
    ours, theirs = unscoped(cfg.model), unscoped(reference.model)
    ours['neck'].pop('in_channels'), theirs['neck'].pop('in_channels')
    ours.pop('backbone'), theirs.pop('backbone')
    assert ours == theirs
    assert metrics_of(cfg) == tasks


def test_dla_config_without_its_weights_stops_in_one_line(
        call_tool, tiny_demo_data, tmp_path):
    """No converted ImageNet weights: one line naming the file, never a
    silent random init, and no run left half-way. The weights are looked
    for at a path that no user has converted weights to (the config's own,
    checkpoints/res2net_dla60.pth, is checked above)."""
    work_dir = tmp_path / 'run'
    missing = tmp_path / 'checkpoints' / 'res2net_dla60.pth'
    result = call_tool('train.py', 'configs/faster_rcnn_r2_dla60_fpn_1x.py',
                       '--work-dir', work_dir, '--cfg-options',
                       f'data_root={tiny_demo_data}/',
                       f'model.backbone.init_cfg.checkpoint={missing}')
    assert result.returncode == 2, result.stderr[-3000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(
        f'error: backbone weights not found: {missing};'), last
    assert 'init_cfg' in last
    assert not work_dir.exists() or not any(work_dir.rglob('*.pth'))


@pytest.mark.parametrize('name', sorted(MADE))
def test_made_configs_are_what_the_maker_writes(repo, name):
    """Each is the maker's output for its base, unedited: a few lines on
    mmdet's config, the backbone swapped for the one
    configs/_base_/res2net_backbones.py defines under the variant's name."""
    base, _ = MADE[name]
    path = repo / 'configs' / f'{name}.py'
    swap = plan_swap(load_base(base), MADE_VARIANT)
    assert path.read_text() == config_text(
        base, MADE_VARIANT, swap, out_dir=str(path.parent))
    assert len(path.read_text().splitlines()) < 30
    assert f'_base_.{MADE_VARIANT},' in path.read_text()


# The image side of the runs: the demo data's, the smallest that every
# detector's strides take (DCN's 3x3 kernels need layer4's 4x4 map).
SCALE = 128


def demo_sized(cfg: Config, config: str, tmp_path) -> str:
    """A config on ``config`` whose pipelines only load, resize and pack
    (``demo_run_options`` then sets the size), for detectors whose own
    pipelines (large-scale jitter, multi-scale choices) have no small
    setting; their batch padding shrinks alike, and an iteration-based
    schedule (Mask2Former's) becomes one epoch with its checkpoint."""
    mask = 'segm' in metrics_of(cfg)
    lines = [
        f'_base_ = {config!r}',
        'load = [dict(type="LoadImageFromFile"), dict(type="LoadAnnotations",'
        f' with_bbox=True, with_mask={mask})]',
        f'resize = dict(type="Resize", scale=({SCALE}, {SCALE}), '
        'keep_ratio=True)',
        'train_dataloader = dict(dataset=dict(pipeline=[load[0], load[1], '
        'resize, dict(type="PackDetInputs")]))',
        'test_dataloader = dict(dataset=dict(pipeline=[load[0], resize, '
        'load[1], dict(type="PackDetInputs", meta_keys=("img_id", '
        '"img_path", "ori_shape", "img_shape", "scale_factor"))]))',
    ]
    augments = cfg.model.data_preprocessor.get('batch_augments')
    if augments:
        pads = [dict(a, size=(SCALE, SCALE)) for a in augments]
        lines.append(
            f'model = dict(data_preprocessor=dict(batch_augments={pads!r}))')
    if cfg.train_cfg.type == 'IterBasedTrainLoop':
        lines += [
            'train_cfg = dict(_delete_=True, type="EpochBasedTrainLoop", '
            'max_epochs=1, val_interval=1)',
            'default_hooks = dict(checkpoint=dict(by_epoch=True, interval=1))',
            'log_processor = dict(by_epoch=True)',
        ]
    path = tmp_path / f'small_{osp.basename(config)}'
    path.write_text('\n'.join(lines) + '\n')
    return str(path)


def fewer_boxes(cfg: Config) -> list:
    """``--cfg-options`` for 100 proposals and 32 RoIs per image (and per
    cascade stage) instead of the demo size's 300 and 64 (the configs' 1000-
    2000 and 512), and 10 detections per test image instead of 100: every
    head still runs, on fewer boxes. RoIAlign's backward over 512 RoIs per
    stage takes most of a CPU step (one HTC step: 14 s, with these 2.8 s),
    and HTC's test runs the mask heads of its three stages on every
    detection. A query-based detector gets 100 queries: DINO picks its 900
    from the encoder's tokens, 340 at 128², and Mask2Former's 100 stay."""
    if 'num_queries' in cfg.model:
        return ['model.num_queries=100', 'model.test_cfg.max_per_img=10']
    if 'max_per_image' in cfg.model.test_cfg:  # MaskFormer's name for it
        return ['model.test_cfg.max_per_image=10']
    if 'rcnn' not in cfg.model.get('train_cfg', {}):  # one-stage
        return ['model.test_cfg.max_per_img=10']
    return [
        'model.train_cfg.rpn_proposal.max_per_img=100',
        'model.test_cfg.rpn.max_per_img=100',
        'model.test_cfg.rcnn.max_per_img=10'
    ] + [f'{stage}.sampler.num=32' for stage in rcnn_train_keys(cfg.model)]


# Each config with a model of its own. HTC trains for two epochs and is
# tested in
# tests/tools/test_train_test.py::test_htc_resumes_exactly_with_its_own_loader_settings;
# an R2-50 config is its R2-101 reference with a 50-layer backbone
# (test_beyond_reference_configs_change_only_the_backbone), whose block is
# R2-101's (tests/projects/res2net/models: both depths against upstream).
R2_50 = {name for name, (_, changes) in BEYOND.items() if 'depth' in changes}
ONE_STEP = [
    name for name in NAMES + sorted(BEYOND) + sorted(DLA) + sorted(MADE)
    if name != 'htc_r2_101_fpn_20e' and name not in R2_50
]


@pytest.mark.parametrize('name', ONE_STEP)
def test_config_trains_one_step_and_tests_on_demo_data(call_tool, repo,
                                                       tiny_demo_data,
                                                       tmp_path, ram_dir,
                                                       name):
    # Each run writes and reads a checkpoint of 160-400 MB.
    work_dir = ram_dir
    config = f'configs/{name}.py'
    cfg = Config.fromfile(repo / config)
    if name in MADE:
        config = demo_sized(cfg, str(repo / config), tmp_path)
    # One image to train on and one to test: what a config adds is its
    # model, which one image runs through whole (batches of several are the
    # demo's and the launchers' tests).
    options = demo_run_options(
        str(tiny_demo_data),
        model=cfg.model,
        scale=SCALE,
        train_images=1,
        test_images=1) + fewer_boxes(cfg)
    # The checkpoint is for test.py: the weights, not the optimizer's state
    # (half of a 500 MB file to write, flush and read).
    train = call_tool('train.py', config, '--work-dir', work_dir,
                      '--cfg-options', *options,
                      'default_hooks.checkpoint.save_optimizer=False')
    assert train.returncode == 0, train.stderr[-3000:]
    assert 'Epoch(train) [1][1/1]' in train.stdout + train.stderr
    # One step was logged, and its loss is a number: a bound on mAP alone
    # holds for a detector that learned nothing from a NaN.
    logged = [
        entry for run in run_dirs(str(work_dir), SCALARS_JSON)
        for entry in read_scalars(scalars_path(run), fix='')
    ]
    logged = [entry for entry in logged if 'loss' in entry]
    assert [(entry['epoch'], entry['iter'], entry['step'])
            for entry in logged] == [(1, 1, 1)], logged
    assert math.isfinite(logged[0]['loss']) and logged[0]['loss'] > 0
    checkpoint = work_dir / 'epoch_1.pth'
    assert checkpoint.is_file()

    test = call_tool('test.py', config, checkpoint, '--work-dir', work_dir,
                     '--cfg-options', *options)
    assert test.returncode == 0, test.stderr[-3000:]
    metrics = json.loads((work_dir / 'metrics.json').read_text())['metrics']
    for task in tasks_of(name):
        assert 0.0 <= metrics[f'coco/{task}_mAP'] <= 1.0
        assert f'| {task} |' in test.stdout
