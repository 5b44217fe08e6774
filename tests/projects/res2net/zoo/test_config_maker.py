# Copyright (c) Res2Net-MMDet contributors. All rights reserved.
"""projects/res2net/zoo/config_maker.py: which backbone settings a Res2Net
keeps, on bases of different shapes; refusals; the written config, and
nothing left where it does not read back or build.

The tool, and a made config trained for a step, are tested in
tests/tools/misc/test_res2net_config.py."""
import pytest
from mmengine.config import Config

from projects.res2net.errors import UserError
from projects.res2net.models.variants import RESNET_VARIANTS, variant_kwargs
from projects.res2net.zoo import config_maker
from projects.res2net.zoo.config_maker import (BACKBONES_BASE,
                                               PYTORCH_NORMALISATION,
                                               NothingToDo, base_backbone,
                                               coco_evaluators, config_text,
                                               default_out, load_base,
                                               make_config, plan_swap,
                                               swap_backbone, variant_backbone)

V101, V50 = 'res2net101_v1b_26w_4s', 'res2net50_v1b_26w_4s'
RETINANET = 'mmdet::retinanet/retinanet_r50_fpn_1x_coco.py'


def swap_of(base: str, variant: str = V101):
    return plan_swap(load_base(base), variant)


def base_file(folder, text: str, name: str = 'base.py') -> str:
    """A base config of a few lines, written into ``folder``."""
    path = folder / name
    path.write_text(text)
    return str(path)


def test_an_fpn_detector_keeps_its_resnet_settings():
    swap = swap_of('mmdet::retinanet/retinanet_r50_fpn_1x_coco.py')
    assert swap.path == ('model', 'backbone')
    assert swap.kept == ('num_stages', 'out_indices', 'style', 'frozen_stages',
                         'norm_cfg', 'norm_eval')
    assert swap.res2net == dict(
        type='Res2NetBackbone',
        **variant_kwargs(V101),
        num_stages=4,
        out_indices=(0, 1, 2, 3),
        style='pytorch',
        frozen_stages=1,
        norm_cfg=dict(type='BN', requires_grad=True),
        norm_eval=True,
        # mmdet's download of the converted ImageNet weights.
        init_cfg=dict(
            type='Pretrained',
            checkpoint='open-mmlab://res2net101_v1d_26w_4s'))
    assert swap.notes == () and swap.data_preprocessor is None
    # Without an mmdet download: the locally converted file.
    fifty = swap_of('mmdet::retinanet/retinanet_r50_fpn_1x_coco.py', V50)
    assert fifty.res2net['depth'] == 50
    assert fifty.res2net['init_cfg'] == dict(
        type='Pretrained', checkpoint=f'checkpoints/{V50}.pth')


def test_a_detr_style_detector_keeps_three_outputs_and_frozen_bn():
    swap = swap_of('mmdet::dino/dino-4scale_r50_8xb2-12e_coco.py')
    assert swap.res2net['out_indices'] == (1, 2, 3)
    assert swap.res2net['norm_cfg'] == dict(type='BN', requires_grad=False)
    assert swap.res2net['frozen_stages'] == 1


def test_a_caffe_style_detector_takes_the_weights_normalisation():
    cfg = load_base('mmdet::fcos/fcos_r50-caffe_fpn_gn-head_1x_coco.py')
    assert cfg.model.backbone.style == 'caffe'
    swap = plan_swap(cfg, V101)
    assert swap.res2net['style'] == 'pytorch'
    assert swap.data_preprocessor == PYTORCH_NORMALISATION
    assert 'caffe-style' in swap.notes[0]
    # The frozen BN of the caffe base is kept.
    assert swap.res2net['norm_cfg'] == dict(type='BN', requires_grad=False)
    swapped = swap_backbone(cfg, V101)
    preprocessor = swapped.model.data_preprocessor
    assert (preprocessor.mean, preprocessor.std,
            preprocessor.bgr_to_rgb) == ([123.675, 116.28,
                                          103.53], [58.395, 57.12,
                                                    57.375], True)
    assert preprocessor.pad_size_divisor == 32  # the rest is the base's


def test_a_semi_supervised_detector_normalises_its_wrapped_branch():
    """Soft Teacher: the ResNet is the student/teacher detector's, and the
    normalisation that of the preprocessor its MultiBranch one wraps."""
    base = ('mmdet::soft_teacher/'
            'soft-teacher_faster-rcnn_r50-caffe_fpn_180k_semi-0.1-coco.py')
    cfg = load_base(base)
    swap = plan_swap(cfg, V50)
    assert swap.path == ('model', 'detector', 'backbone')
    assert swap.preprocessor_path == ('model', 'data_preprocessor',
                                      'data_preprocessor')
    swapped = swap_backbone(cfg, V50)
    inner = swapped.model.data_preprocessor.data_preprocessor
    assert (inner.mean, inner.bgr_to_rgb) == ([123.675, 116.28, 103.53], True)
    assert swapped.model.detector.backbone.type == 'Res2NetBackbone'


def test_a_dcn_detector_keeps_its_deformable_stages():
    swap = swap_of('mmdet::dcn/faster-rcnn_r50-dconv-c3-c5_fpn_1x_coco.py')
    assert swap.res2net['dcn'] == dict(
        type='DCN', deform_groups=1, fallback_on_stride=False)
    assert swap.res2net['stage_with_dcn'] == (False, True, True, True)


@pytest.mark.parametrize('base, words', [
    ('mmdet::swin/mask-rcnn_swin-t-p4-w7_fpn_1x_coco.py',
     ['model.backbone is SwinTransformer, not a ResNet']),
    ('mmdet::retinanet/retinanet_r18_fpn_1x_coco.py',
     ['ResNet-18', '64-512 channels']),
])
def test_a_backbone_it_cannot_replace_is_refused_with_the_reason(base, words):
    with pytest.raises(UserError) as info:
        swap_of(base)
    message = str(info.value)
    assert '\n' not in message
    for word in words:
        assert word in message


@pytest.mark.parametrize('base', [
    'mmdet::res2net/faster-rcnn_res2net-101_fpn_2x_coco.py',
    'configs/faster_rcnn_r2_101_fpn_2x.py',
])
def test_a_res2net_base_is_a_no_op(repo, base, tmp_path):
    path = base if base.startswith('mmdet::') else str(repo / base)
    out = tmp_path / 'made.py'
    with pytest.raises(NothingToDo, match='already is Res2Net'):
        make_config(path, V101, str(out))
    assert not out.exists()


@pytest.mark.parametrize('variant, words', [
    ('res2net_dla60', ['Res2NetDLA', '128-1024 channels']),
    ('res2net34', ["unknown Res2Net variant 'res2net34'"]),
])
def test_variants_that_do_not_fit_are_refused(variant, words):
    with pytest.raises(UserError) as info:
        swap_of('mmdet::retinanet/retinanet_r50_fpn_1x_coco.py', variant)
    for word in words:
        assert word in str(info.value)


def test_unknown_backbone_settings_are_refused():
    cfg = load_base('mmdet::retinanet/retinanet_r50_fpn_1x_coco.py')
    cfg.model.backbone.foo = 1
    with pytest.raises(UserError, match='model.backbone.foo has no Res2Net'):
        plan_swap(cfg, V101)


def test_the_written_config_is_the_swap_and_builds(tmp_path):
    """The leaf config reads as the in-memory swap (what the compatibility
    table builds), a few lines on the base; it was built before it was
    written."""
    base = 'mmdet::atss/atss_r50_fpn_1x_coco.py'
    out = tmp_path / 'configs' / 'atss.py'
    made = make_config(base, V101, str(out))
    text = out.read_text()
    assert made.text == text and len(text.splitlines()) < 40
    assert f"'{base}'" in text and '_delete_=True' in text
    # The network from the project's backbone base, not spelled out.
    assert f'_base_.{V101},' in text and 'Res2NetBackbone' not in text
    written = Config.fromfile(str(out))
    swapped = swap_backbone(load_base(base), V101)
    assert written.model == swapped.model
    assert written.custom_imports.imports == ['projects.res2net']
    # The project's training hooks come with its backbone base.
    assert [h['type'] for h in written.custom_hooks
            ] == ['ExactResumeHook', 'FiniteLossHook', 'SignalCheckpointHook']


def test_a_base_with_its_own_hooks_keeps_them(tmp_path):
    """mmengine allows no key in two bases: a base with custom_hooks (or
    custom_imports) gets both set in the written config, its own and the
    project's, instead of inheriting the project's backbone base."""
    base = tmp_path / 'ema.py'
    base.write_text("_base_ = 'mmdet::atss/atss_r50_fpn_1x_coco.py'\n"
                    "custom_hooks = [dict(type='EMAHook', momentum=0.0002)]\n")
    out = tmp_path / 'made.py'
    made = make_config(str(base), V101, str(out))
    assert made.swap.own_settings
    # Without the backbone base, its network is spelled out.
    assert 'res2net_backbones.py' not in made.text
    assert '_base_.' not in made.text and 'depth=101' in made.text
    written = Config.fromfile(str(out))
    assert [h['type'] for h in written.custom_hooks] == [
        'EMAHook', 'ExactResumeHook', 'FiniteLossHook', 'SignalCheckpointHook'
    ]
    assert written.custom_imports == dict(
        imports=['projects.res2net'], allow_failed_imports=False)
    assert written.model.backbone.type == 'Res2NetBackbone'


def test_default_out_replaces_the_resnet_token(repo):
    assert default_out(
        'mmdet::dino/dino-4scale_r50_8xb2-12e_coco.py',
        V101) == str(repo / 'configs' /
                     'dino-4scale_res2net101-v1b-26w-4s_8xb2-12e_coco.py')
    assert default_out('mmdet::fcos/fcos_r50-caffe_fpn_gn-head_1x_coco.py',
                       V50) == str(
                           repo / 'configs' /
                           'fcos_res2net50-v1b-26w-4s_fpn_gn-head_1x_coco.py')
    # A name without a ResNet token gets the variant appended.
    assert default_out('/mine/my_detector.py',
                       V50) == str(repo / 'configs' /
                                   'my_detector_res2net50-v1b-26w-4s.py')


def test_a_missing_base_is_one_line(tmp_path):
    with pytest.raises(UserError, match='base config not found'):
        load_base(str(tmp_path / 'nope.py'))
    with pytest.raises(UserError, match='cannot read base config mmdet::x/'):
        load_base('mmdet::x/y.py')
    broken = base_file(tmp_path, 'model = dict(\n')
    with pytest.raises(UserError) as info:
        load_base(broken)
    message = str(info.value)
    assert message.startswith(
        f'cannot read base config {broken}: SyntaxError: ')
    assert '\n' not in message


@pytest.mark.parametrize(
    'text, message', [
        ('train_cfg = dict(max_epochs=1)\n',
         'the base has no model to put a Res2Net in'),
        ("model = dict(type='DETR', neck=dict(type='ChannelMapper'))\n",
         'the base has no model.backbone: there is no one ResNet backbone to '
         'replace'),
        ("r50 = dict(type='ResNet', depth=50)\n"
         'model = dict(student=dict(backbone=r50),\n'
         '             teacher=dict(backbone=r50))\n',
         'the base has backbones at model.student.backbone, '
         'model.teacher.backbone: there is no one ResNet backbone to replace'),
    ],
    ids=['no model', 'no backbone', 'two backbones'])
def test_a_base_without_one_backbone_is_one_line(tmp_path, text, message):
    with pytest.raises(UserError) as info:
        plan_swap(load_base(base_file(tmp_path, text)), V101)
    assert str(info.value) == message


def test_a_swap_that_does_not_build_is_one_line_and_leaves_nothing(tmp_path):
    """GroupNorm of 64 groups fits every ResNet-50 layer, not the 32
    channels of the Res2Net's deep stem: the written config does not build,
    and neither it, nor its temporary file, nor its new folder is left."""
    base = base_file(
        tmp_path, f'_base_ = {RETINANET!r}\n'
        "model = dict(backbone=dict(norm_cfg=dict(type='GN', num_groups=64)))"
        '\n')
    configs = tmp_path / 'configs'
    configs.mkdir()
    with pytest.raises(UserError) as info:
        make_config(base, V50, str(configs / 'new' / 'made.py'))
    assert str(info.value) == (
        'the Res2Net config does not build: ConfigValueError: norm_cfg GN '
        'num_groups=64 must divide the channels of the stem and of each '
        "stage's output, but not 32; pick a divisor of all of [32, 64, 256, "
        '512, 1024, 2048]')
    assert list(configs.iterdir()) == []


def test_a_written_config_that_is_not_the_swap_is_not_left(
        tmp_path, monkeypatch):
    """The written config is read back and its backbone compared with the
    swap before anything is built: a writer that got it wrong (here: the
    depth) stops with one line and leaves nothing."""
    written = config_maker.config_text

    def wrong_depth(*args, **kwargs) -> str:
        text = written(*args, **kwargs)
        assert 'depth=50' in text
        return text.replace('depth=50', 'depth=101')

    monkeypatch.setattr(config_maker, 'config_text', wrong_depth)
    with pytest.raises(RuntimeError) as info:
        make_config(RETINANET, V50, str(tmp_path / 'made.py'))
    message = str(info.value)
    assert message.startswith("the written config's backbone is {'type': "
                              "'Res2NetBackbone', 'depth': 101,")
    assert "not {'type': 'Res2NetBackbone', 'depth': 50," in message
    assert '\n' not in message
    assert list(tmp_path.iterdir()) == []


def test_a_base_a_plain_config_cannot_inherit_is_one_line(tmp_path):
    """A lazy-import (new-style) base loads (its types are classes, which
    read as their module paths: ``mmdet.models.ResNet`` is a ResNet), but
    mmengine lets no plain config inherit it: reading the written config
    back says so, in one line, and nothing is left."""
    base = base_file(
        tmp_path, 'from mmdet.models import ResNet, RetinaNet\n'
        'model = dict(type=RetinaNet, backbone=dict(type=ResNet, depth=50))'
        '\n')
    out = tmp_path / 'new' / 'made.py'
    with pytest.raises(UserError) as info:
        make_config(base, V50, str(out))
    message = str(info.value)
    assert message.startswith(f'the Res2Net config on {base} cannot be read '
                              'back: RuntimeError: The configuration file '
                              'type in the inheritance chain must match')
    assert 'lazy_import' in message and '\n' not in message
    assert [p.name for p in tmp_path.iterdir()] == ['base.py']


def test_the_backbone_base_defines_variants_as_the_variants_table():
    """configs/_base_/res2net_backbones.py defines the backbones of the
    committed made configs under their variants' names, each the network
    and weights of projects/res2net/models/variants.py; another variant is
    spelled out in the written config."""
    project = Config.fromfile(str(BACKBONES_BASE))
    defined = [name for name in RESNET_VARIANTS if name in project]
    assert V101 in defined
    for name in defined:
        assert project[name] == variant_backbone(name), name
        assert base_backbone(name) == name
    assert V50 not in defined and base_backbone(V50) is None


def test_a_variant_the_base_does_not_define_is_spelled_out(tmp_path):
    base = 'mmdet::atss/atss_r50_fpn_1x_coco.py'
    swap = swap_of(base, V50)
    text = config_text(base, V50, swap, out_dir=str(tmp_path))
    assert '_base_.' not in text
    assert "type='Res2NetBackbone'" in text and 'depth=50' in text
    (tmp_path / 'made.py').write_text(text)
    written = Config.fromfile(str(tmp_path / 'made.py'))
    assert written.model == swap_backbone(load_base(base), V50).model


def test_only_coco_metric_evaluators_become_faster_coco_metric():
    """mmdet's CocoMetric (settings kept) becomes FasterCocoMetric; any
    other evaluator, or a list of them, stays the base's."""
    coco = dict(type='CocoMetric', metric='bbox')
    assert coco_evaluators(dict(val_evaluator=coco,
                                test_evaluator=coco)) == ('val_evaluator',
                                                          'test_evaluator')
    panoptic = dict(type='CocoPanopticMetric')
    assert coco_evaluators(
        dict(val_evaluator=panoptic, test_evaluator=[coco, panoptic])) == ()
    cfg = load_base('mmdet::retinanet/retinanet_r50_fpn_1x_coco.py')
    swap_backbone(cfg, 'res2net101_v1b_26w_4s')
    assert cfg.test_evaluator.type == 'FasterCocoMetric'
    assert cfg.test_evaluator.metric == 'bbox'  # the base's
