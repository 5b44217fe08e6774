# Copyright (c) Res2Net-MMDet contributors. All rights reserved.
"""The Res2Net backbone: shapes, arguments, freezing, weights, mmdet parity."""
import pytest
import torch
from mmcv.ops import DeformConv2dPack
from mmdet.registry import MODELS
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from projects.res2net import Bottle2neck, Res2NetBackbone
from projects.res2net.errors import CheckpointError


def build(**kwargs) -> Res2NetBackbone:
    return MODELS.build(dict(type='Res2NetBackbone', **kwargs))


@pytest.mark.parametrize('depth', [50, 101, 152])
def test_output_shapes_per_depth(depth):
    model = build(depth=depth).eval()
    with torch.no_grad():
        outs = model(torch.rand(1, 3, 64, 96))
    assert [tuple(o.shape) for o in outs] == [(1, 256, 16, 24),
                                              (1, 512, 8, 12), (1, 1024, 4, 6),
                                              (1, 2048, 2, 3)]


@pytest.mark.parametrize(
    'kwargs, shapes',
    [
        # Output stride 16: the last stage dilates instead of striding.
        (dict(strides=(1, 2, 2, 1), dilations=(1, 1, 1, 2)), [(256, 16),
                                                              (512, 8),
                                                              (1024, 4),
                                                              (2048, 4)]),
        # The stride in the first 1x1 conv.
        (dict(style='caffe'), [(256, 16), (512, 8), (1024, 4), (2048, 2)]),
        # Res2Net v1: 7x7 stem, strided-conv downsample.
        (dict(stem_type='basic', avg_down=False), [(256, 16), (512, 8),
                                                   (1024, 4), (2048, 2)]),
        (dict(
            num_stages=3,
            strides=(1, 2, 2),
            dilations=(1, 1, 1),
            out_indices=(1, 2)), [(512, 8), (1024, 4)]),
        (dict(scales=8, base_width=14, out_indices=(3, )), [(2048, 2)]),
        (dict(base_channels=16, base_width=6), [(64, 16), (128, 8), (256, 4),
                                                (512, 2)]),
    ])
def test_output_shapes_per_setting(kwargs, shapes):
    model = build(depth=50, **kwargs).eval()
    with torch.no_grad():
        outs = model(torch.rand(2, 3, 64, 64))
    assert [(o.shape[1], o.shape[2]) for o in outs] == shapes
    assert all(o.shape[0] == 2 for o in outs)


def test_block_structure_and_widths():
    model = build(depth=50, scales=4, base_width=26)
    layers = [model.layer1, model.layer2, model.layer3, model.layer4]
    for i, layer in enumerate(layers):
        width = 26 * 2**i
        for j, block in enumerate(layer):
            assert isinstance(block, Bottle2neck)
            assert block.is_stage_block == (j == 0)
            assert block.conv1.out_channels == width * 4
            assert len(block.convs) == len(block.bns) == 3
            assert all(c.in_channels == c.out_channels == width
                       for c in block.convs)
            # mmdet's rule: only a strided stage block pools.
            assert (block.pool is not None) == (j == 0 and i > 0)


def test_first_block_pool_rule_always_pools_at_stride_1():
    model = build(depth=50, first_block_pool='always')
    assert isinstance(model.layer1[0].pool, nn.AvgPool2d)
    assert model.layer1[0].pool.stride == 1
    assert model.layer1[1].pool is None
    # Same keys either way: the pool has no parameters.
    assert model.state_dict().keys() == build(depth=50).state_dict().keys()
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        always = model.eval()(x)
        strided = build(depth=50).eval()
        strided.load_state_dict(model.state_dict())
        assert not torch.allclose(always[0], strided(x)[0])


def test_stage_block_does_not_accumulate_but_normal_block_does():
    block = Bottle2neck(64, 64, scales=4, base_width=16, base_channels=64)
    block.eval()
    x = torch.rand(1, 64, 8, 8)
    with torch.no_grad():
        out = block._split_convs(x)
        expected = []
        for i in range(3):
            sp = x[:, 16 * i:16 * (i + 1)]
            if i > 0:
                sp = sp + expected[-1]
            expected.append(block.relu(block.bns[i](block.convs[i](sp))))
        expected.append(x[:, 48:])
    assert not block.is_stage_block
    # In eval mode the block folds each BN into its conv for the call:
    # float rounding only.
    torch.testing.assert_close(
        out, torch.cat(expected, 1), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize('kwargs, names', [
    (dict(depth=18), ['depth=18', '50, 101, 152, 200']),
    (dict(depth=50, scales=1), ['scales=1', '>= 2']),
    (dict(depth=50, base_width=0), ['base_width=0', '0 channels']),
    (dict(depth=50, base_width=0.5), ['base_width=0.5', '0 channels']),
    (dict(depth=50, stem_type='v1c'), ['stem_type', "'deep', 'basic'"]),
    (dict(depth=50, first_block_pool='never'),
     ['first_block_pool', "'strided', 'always'"]),
    (dict(depth=50, style='tf'), ['style', "'pytorch', 'caffe'"]),
    (dict(depth=50, frozen_stages=5), ['frozen_stages=5', '-1..4']),
    (dict(depth=50, out_indices=(4, )), ['out_indices', '0..3']),
    (dict(depth=50, strides=(1, 2)), ['strides', 'num_stages=4']),
    (dict(depth=50, norm_cfg=dict(
        type='GN', num_groups=48)), ['num_groups=48', 'not 64']),
    (dict(
        depth=50,
        plugins=[dict(cfg=dict(type='ContextBlock'), position='before_conv1')
                 ]), ['plugins[].position', 'after_conv1']),
])
def test_invalid_arguments_raise_value_error_naming_them(kwargs, names):
    with pytest.raises(ValueError) as info:
        build(**kwargs)
    for name in names:
        assert name in str(info.value)


def test_norm_layers_bn_syncbn_gn():
    gn = build(depth=50, norm_cfg=dict(type='GN', num_groups=2))
    assert isinstance(gn.layer1[0].bns[0], nn.GroupNorm)
    assert gn.layer1[0].bns[0].num_groups == 2
    with torch.no_grad():
        assert gn(torch.rand(1, 3, 64, 64))[-1].shape == (1, 2048, 2, 2)
    # mmdet's GN configs: 32 groups, which no 26w split divides; the norms
    # over the splits take the largest count that divides their channels.
    gn32 = build(depth=50, norm_cfg=dict(type='GN', num_groups=32))
    block = gn32.layer1[0]
    assert [n.num_groups for n in block.bns] == [2, 2, 2]  # 26 channels
    assert block.norm1.num_groups == 8  # 104 = 4 splits
    assert block.norm3.num_groups == 32  # 256
    assert gn32.layer4[0].bns[0].num_groups == 16  # 208
    assert gn32.stem[1].num_groups == 32
    with torch.no_grad():
        assert gn32(torch.rand(1, 3, 64, 64))[-1].shape == (1, 2048, 2, 2)
    sync = build(depth=50, norm_cfg=dict(type='SyncBN'))
    assert isinstance(sync.layer3[2].bns[1], nn.SyncBatchNorm)
    assert isinstance(sync.stem[1], nn.SyncBatchNorm)


def _bn_stats(module):
    return [
        m.running_mean.clone() for m in module.modules()
        if isinstance(m, _BatchNorm)
    ]


def test_frozen_stages_freeze_weights_and_statistics():
    model = build(depth=50, frozen_stages=2, norm_eval=False)
    model.train()
    frozen = [model.stem, model.layer1, model.layer2]
    for module in frozen:
        assert not any(p.requires_grad for p in module.parameters())
        assert not any(m.training for m in module.modules())
    assert all(p.requires_grad for p in model.layer3.parameters())
    assert model.layer3.training
    before = [_bn_stats(m) for m in frozen + [model.layer3]]
    model(torch.rand(2, 3, 64, 64))[-1].sum().backward()
    after = [_bn_stats(m) for m in frozen + [model.layer3]]
    for old, new in zip(before[:3], after[:3]):
        assert all(torch.equal(a, b) for a, b in zip(old, new))
    assert not all(torch.equal(a, b) for a, b in zip(before[3], after[3]))
    assert model.layer2[0].conv1.weight.grad is None
    assert model.layer3[0].conv1.weight.grad is not None


def test_norm_eval_keeps_bn_statistics():
    model = build(depth=50, norm_eval=True)
    assert model.train() is model and model.eval() is model
    model.train()
    assert not any(m.training
                   for m in model.modules() if isinstance(m, _BatchNorm))
    before = _bn_stats(model)
    model(torch.rand(2, 3, 64, 64))
    assert all(torch.equal(a, b) for a, b in zip(before, _bn_stats(model)))
    # Parameters still learn.
    assert all(p.requires_grad for p in model.parameters())


def test_with_cp_gives_same_output_and_gradients(randomise,
                                                 same_outputs_and_gradients):
    """Checkpointed blocks recompute their activations in the backward
    pass: every stage's output, the input's gradient and every parameter's
    gradient are those of the plain network."""
    torch.manual_seed(0)
    plain = randomise(build(depth=50, norm_eval=True))
    ckpt = build(depth=50, norm_eval=True, with_cp=True)
    ckpt.load_state_dict(plain.state_dict())
    assert all(p.requires_grad for p in plain.parameters())  # every one
    same_outputs_and_gradients(
        plain, ckpt, torch.rand(1, 3, 64, 64), outputs=4)


def test_dcn_replaces_split_convs_in_chosen_stages():
    model = build(
        depth=50,
        dcn=dict(type='DCN', deform_groups=1, fallback_on_stride=False),
        stage_with_dcn=(False, True, True, True))
    assert not isinstance(model.layer1[0].convs[0], DeformConv2dPack)
    for layer in (model.layer2, model.layer3, model.layer4):
        assert all(
            isinstance(c, DeformConv2dPack) for b in layer for c in b.convs)
    model.train()
    outs = model(torch.rand(1, 3, 128, 128))
    outs[-1].sum().backward()
    assert outs[-1].shape == (1, 2048, 4, 4)
    assert model.layer4[0].convs[0].conv_offset.weight.grad is not None


def test_plugins_see_the_right_channels():
    model = build(
        depth=50,
        plugins=[
            dict(
                cfg=dict(type='ContextBlock', ratio=1. / 4, postfix=1),
                position='after_conv2',
                stages=(False, True, True, True)),
            dict(
                cfg=dict(type='ContextBlock', ratio=1. / 16, postfix=2),
                position='after_conv3'),
        ])
    block = model.layer2[0]
    assert block.after_conv2_plugin_names == ['context_block1']
    # After the split convs a block has width * scales channels.
    assert block.context_block1.in_channels == 52 * 4
    assert block.context_block2.in_channels == 512
    assert model.layer1[0].after_conv2_plugin_names == []
    with torch.no_grad():
        assert model(torch.rand(1, 3, 64, 64))[1].shape == (1, 512, 8, 8)


def test_zero_init_residual_only_when_training_from_scratch():
    model = build(depth=50)
    model.init_weights()
    assert all(b.norm3.weight.abs().sum() == 0 for b in model.layer2)
    plain = build(depth=50, zero_init_residual=False)
    plain.init_weights()
    assert all(b.norm3.weight.abs().sum() > 0 for b in plain.layer2)


# --- pretrained weights -------------------------------------------------


def test_pretrained_from_local_file_loads_every_tensor(tmp_path, randomise):
    source = randomise(build(depth=50))
    state = dict(source.state_dict())
    # An ImageNet checkpoint also has the classifier; it is dropped.
    state['fc.weight'] = torch.zeros(1000, 2048)
    path = tmp_path / 'r2_50.pth'
    torch.save({'state_dict': state}, path)
    model = build(
        depth=50, init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    model.init_weights()
    for key, value in source.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key


def test_pretrained_from_detector_checkpoint_with_prefix(tmp_path, randomise):
    source = randomise(build(depth=50))
    path = tmp_path / 'detector.pth'
    torch.save({
        'backbone.' + k: v
        for k, v in source.state_dict().items()
    }, path)
    model = build(
        depth=50,
        init_cfg=dict(
            type='Pretrained', checkpoint=str(path), prefix='backbone.'))
    model.init_weights()
    assert torch.equal(model.layer3[1].convs[2].weight,
                       source.layer3[1].convs[2].weight)
    # Without the prefix the error says to add it.
    bare = build(
        depth=50, init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    with pytest.raises(CheckpointError, match="prefix='backbone.'"):
        bare.init_weights()


@pytest.mark.parametrize('saved, wanted, problems', [
    (dict(depth=50, scales=8, base_width=14), dict(depth=50),
     ['unexpected keys (layer1.0.convs.3.weight', 'shape mismatches']),
    (dict(depth=50), dict(depth=101), ['missing keys (layer3.6.']),
])
def test_pretrained_mismatch_is_one_line_error(tmp_path, saved, wanted,
                                               problems):
    path = tmp_path / 'other.pth'
    torch.save(build(**saved).state_dict(), path)
    model = build(
        **wanted, init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    before = model.layer1[0].conv1.weight.clone()
    with pytest.raises(CheckpointError) as info:
        model.init_weights()
    message = str(info.value)
    assert '\n' not in message
    assert 'does not fit Res2NetBackbone' in message
    for problem in problems:
        assert problem in message
    # Nothing was loaded half-way.
    assert torch.equal(model.layer1[0].conv1.weight, before)


def test_pretrained_missing_file_and_unreachable_url(tmp_path):
    missing = build(
        depth=50,
        init_cfg=dict(type='Pretrained', checkpoint=str(tmp_path / 'x.pth')))
    with pytest.raises(CheckpointError, match='backbone weights not found'):
        missing.init_weights()
    # Port 9 (discard) on loopback refuses at once: a fetch that fails.
    remote = build(
        depth=50,
        init_cfg=dict(
            type='Pretrained', checkpoint='http://127.0.0.1:9/r2.pth'))
    with pytest.raises(CheckpointError) as info:
        remote.init_weights()
    message = str(info.value)
    assert message.startswith('cannot fetch backbone weights')
    assert 'model.backbone.init_cfg.checkpoint=' in message
    assert 'init_cfg=None' in message and '\n' not in message


# --- parity with mmdet's own Res2Net ------------------------------------


def test_state_dict_and_outputs_match_mmdet_res2net_101(randomise):
    ours = build(depth=101, scales=4, base_width=26)
    theirs = MODELS.build(
        dict(type='Res2Net', depth=101, scales=4, base_width=26))
    ours_sd, theirs_sd = ours.state_dict(), theirs.state_dict()
    assert ours_sd.keys() == theirs_sd.keys()
    assert all(ours_sd[k].shape == theirs_sd[k].shape for k in ours_sd)
    randomise(theirs)
    ours.load_state_dict(theirs.state_dict(), strict=True)
    ours.eval(), theirs.eval()
    x = torch.rand(2, 3, 96, 128, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        for a, b in zip(ours(x), theirs(x)):
            assert (a - b).abs().max() <= 1e-5
    # Also in training mode (batch statistics, gradients flow the same), in
    # float64: a ReLU or max-pool near a tie routes the gradient by the last
    # bit, and in float32 the two networks' last bits differ (another order
    # of the same sums) -- 3 of 54 random inputs moved a gradient by 1.5e-4.
    ours.double().train(), theirs.double().train()
    for model in (ours, theirs):
        model(x.double())[-1].sum().backward()
    named_grads = dict(theirs.named_parameters())
    for name, param in ours.named_parameters():
        assert torch.allclose(
            param.grad, named_grads[name].grad, rtol=0, atol=1e-10), name


# --- the speed paths compute what the reference block computes ----------


@pytest.mark.parametrize('path',
                         ['cpu_channels_last', 'nchw', 'channels_last_input'])
def test_every_speed_path_gives_mmdet_res2net_outputs(path, randomise):
    """In eval mode, with and without gradients: CPU inference in
    channels-last (the default), plain NCHW, and a channels-last input
    (the deploy form) give mmdet's Res2Net outputs, in the input's
    layout."""
    theirs = randomise(
        MODELS.build(dict(type='Res2Net', depth=50, scales=4, base_width=26)))
    ours = build(depth=50, cpu_channels_last=path == 'cpu_channels_last')
    ours.load_state_dict(theirs.state_dict(), strict=True)
    ours.eval(), theirs.eval()
    x = torch.rand(2, 3, 64, 96)
    want = theirs(x)
    if path == 'channels_last_input':
        x = x.contiguous(memory_format=torch.channels_last)
    for grad in (False, True):
        with torch.set_grad_enabled(grad):
            got = ours(x)
        for a, b in zip(got, want):
            assert a.is_contiguous(memory_format=torch.channels_last) \
                if path == 'channels_last_input' else a.is_contiguous()
            assert (a - b).abs().max() <= 1e-5


def test_cpu_channels_last_is_off_where_mmcv_ops_read_nchw():
    dcn = dict(type='DCN', deform_groups=1, fallback_on_stride=False)
    assert build(depth=50).cpu_channels_last
    assert not build(depth=50, dcn=dcn).cpu_channels_last
    with pytest.raises(ValueError, match='cpu_channels_last'):
        build(depth=50, dcn=dcn, cpu_channels_last=True)
