# Copyright (c) Res2Net-MMDet contributors. All rights reserved.
"""Res2Net-DLA: the backbone's conventions, and exactness to the upstream.

The upstream network is re-implemented here from the published description
(the official ``dla.py``: ``Bottle2neck``/``Bottle2neckX`` with expansion 2,
``Tree``, ``Root``, ``DLA`` with ``base_layer``, ``level0`` .. ``level5``
and a 1x1-conv ``fc``; the original DLA's plain ``Bottleneck`` for the
baseline), independent of the project's code: converted weights must
reproduce its outputs.
"""
import math

import pytest
import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from projects.res2net.models.convert import (fill_unused_dla_keys,
                                             from_backbone, to_backbone)
from projects.res2net.models.deploy import deploy
from projects.res2net.models.dla import DLA, Res2NetDLA
from projects.res2net.models.variants import (DLA_VARIANTS, build_variant,
                                              variant_kwargs)

# --- the upstream reference (official dla.py) ------------------------------


class UpstreamBottle2neck(nn.Module):
    """Bottle2neck (groups=1, baseWidth 28) / Bottle2neckX (cardinality 8)
    of the official dla.py; ``planes`` are the output channels."""
    expansion = 2

    def __init__(self, inplanes, planes, stride=1, cardinality=1, scale=4):
        super().__init__()
        if cardinality == 1:
            width = int(math.floor(planes * 28 / 128.0))
        else:
            width = planes * cardinality // 32
        self.conv1 = nn.Conv2d(inplanes, width * scale, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width * scale)
        self.stage = stride != 1
        self.pool = nn.AvgPool2d(3, stride, 1)
        self.convs = nn.ModuleList(
            nn.Conv2d(
                width, width, 3, stride, 1, groups=cardinality, bias=False)
            for _ in range(scale - 1))
        self.bns = nn.ModuleList(
            nn.BatchNorm2d(width) for _ in range(scale - 1))
        self.conv3 = nn.Conv2d(width * scale, planes, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes)
        self.width, self.scale = width, scale

    def forward(self, x, residual=None):
        if residual is None:
            residual = x
        out = torch.relu(self.bn1(self.conv1(x)))
        spx = torch.split(out, self.width, 1)
        sp = None
        for i in range(self.scale - 1):
            sp = spx[i] if i == 0 or self.stage else sp + spx[i]
            sp = torch.relu(self.bns[i](self.convs[i](sp)))
            out = sp if i == 0 else torch.cat((out, sp), 1)
        last = self.pool(spx[-1]) if self.stage else spx[-1]
        out = self.bn3(self.conv3(torch.cat((out, last), 1)))
        return torch.relu(out + residual)


class UpstreamBottleneck(nn.Module):
    """The original DLA's plain Bottleneck: expansion 2, stride on conv2."""
    expansion = 2

    def __init__(self, inplanes, planes, stride=1, cardinality=None):
        super().__init__()
        mid = planes // self.expansion
        self.conv1 = nn.Conv2d(inplanes, mid, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(mid)
        self.conv2 = nn.Conv2d(mid, mid, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(mid)
        self.conv3 = nn.Conv2d(mid, planes, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes)

    def forward(self, x, residual=None):
        if residual is None:
            residual = x
        out = torch.relu(self.bn1(self.conv1(x)))
        out = torch.relu(self.bn2(self.conv2(out)))
        return torch.relu(self.bn3(self.conv3(out)) + residual)


class UpstreamRoot(nn.Module):

    def __init__(self, in_channels, out_channels):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)

    def forward(self, *x):
        return torch.relu(self.bn(self.conv(torch.cat(x, 1))))


class UpstreamTree(nn.Module):

    def __init__(self,
                 levels,
                 cardinality,
                 in_channels,
                 out_channels,
                 stride=1,
                 level_root=False,
                 root_dim=0,
                 block=UpstreamBottle2neck):
        super().__init__()
        if root_dim == 0:
            root_dim = 2 * out_channels
        if level_root:
            root_dim += in_channels
        if levels == 1:
            self.tree1 = block(in_channels, out_channels, stride, cardinality)
            self.tree2 = block(out_channels, out_channels, 1, cardinality)
            self.root = UpstreamRoot(root_dim, out_channels)
        else:
            self.tree1 = UpstreamTree(
                levels - 1,
                cardinality,
                in_channels,
                out_channels,
                stride,
                block=block)
            self.tree2 = UpstreamTree(
                levels - 1,
                cardinality,
                out_channels,
                out_channels,
                root_dim=root_dim + out_channels,
                block=block)
        self.level_root, self.levels = level_root, levels
        self.downsample = nn.MaxPool2d(stride, stride) if stride > 1 else None
        self.project = None
        if in_channels != out_channels:
            self.project = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, bias=False),
                nn.BatchNorm2d(out_channels))

    def forward(self, x, residual=None, children=None):
        # As the official code: the projection is computed at every level
        # (a subtree ignores the residual it is given).
        children = [] if children is None else children
        bottom = self.downsample(x) if self.downsample else x
        residual = self.project(bottom) if self.project else bottom
        if self.level_root:
            children.append(bottom)
        x1 = self.tree1(x, residual)
        if self.levels == 1:
            x2 = self.tree2(x1)
            return self.root(x2, x1, *children)
        children.append(x1)
        return self.tree2(x1, children=children)


class UpstreamDLA(nn.Module):
    """DLA-60: levels (1, 1, 1, 2, 3, 1), channels 16 .. 1024."""

    def __init__(self, cardinality, block=UpstreamBottle2neck):
        super().__init__()
        levels, ch = (1, 1, 1, 2, 3, 1), (16, 32, 128, 256, 512, 1024)

        def conv_level(cin, cout, k, s):
            return nn.Sequential(
                nn.Conv2d(cin, cout, k, s, k // 2, bias=False),
                nn.BatchNorm2d(cout), nn.ReLU(inplace=True))

        self.base_layer = conv_level(3, ch[0], 7, 1)
        self.level0 = conv_level(ch[0], ch[0], 3, 1)
        self.level1 = conv_level(ch[0], ch[1], 3, 2)
        for i in range(2, 6):
            setattr(
                self, f'level{i}',
                UpstreamTree(
                    levels[i],
                    cardinality,
                    ch[i - 1],
                    ch[i],
                    2,
                    level_root=i > 2,
                    block=block))
        self.fc = nn.Conv2d(ch[-1], 1000, 1)

    def forward(self, x):
        x, outs = self.base_layer(x), []
        for i in range(6):
            x = getattr(self, f'level{i}')(x)
            outs.append(x)
        return outs


CARDINALITY = {'res2net_dla60': 1, 'res2next_dla60': 8}
PUBLISHED_PARAMS = {'res2net_dla60': 21.146, 'res2next_dla60': 17.330}


def _randomise_bn(model: nn.Module) -> nn.Module:
    """Random BN statistics and affine terms (the convs keep their random
    default initialisation)."""
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                m.weight.copy_(1 + torch.randn(n, generator=gen) / 10)
                m.bias.copy_(torch.randn(n, generator=gen) / 10)
                m.running_mean.copy_(torch.randn(n, generator=gen) / 10)
                m.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
    return model


@pytest.mark.parametrize('name', sorted(DLA_VARIANTS))
def test_converted_upstream_weights_give_the_upstream_network(name):
    torch.manual_seed(0)
    upstream = _randomise_bn(UpstreamDLA(CARDINALITY[name])).eval()
    params = sum(p.numel() for p in upstream.parameters()) / 1e6
    assert abs(params - PUBLISHED_PARAMS[name]) <= 0.001
    conversion = to_backbone(upstream.state_dict())
    assert conversion.dropped == ['fc.weight', 'fc.bias']
    assert conversion.renamed == []  # the official names are ours
    ours = build_variant(name, out_indices=(0, 1, 2, 3, 4, 5))
    assert isinstance(ours, Res2NetDLA)
    ours.load_state_dict(conversion.state_dict, strict=True)
    ours.eval()
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        diffs = [(a - b).abs().max().item()
                 for a, b in zip(ours(x), upstream(x))]
    assert len(diffs) == 6 and max(diffs) <= 1e-5, diffs
    back = from_backbone(ours.state_dict()).state_dict
    assert back.keys(
    ) == upstream.state_dict().keys() - {'fc.weight', 'fc.bias'}


def test_plain_dla_is_the_upstream_dla60():
    """The baseline: the same network with the plain bottleneck, exact to
    the original DLA-60 (the official checkpoints' keys, its outputs)."""
    torch.manual_seed(0)
    upstream = _randomise_bn(UpstreamDLA(None, UpstreamBottleneck)).eval()
    state = {k: v for k, v in upstream.state_dict().items() if 'fc.' not in k}
    ours = DLA(out_indices=(0, 1, 2, 3, 4, 5))
    assert not isinstance(ours, Res2NetDLA)
    ours.load_state_dict(state, strict=True)
    ours.eval()
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        diffs = [(a - b).abs().max().item()
                 for a, b in zip(ours(x), upstream(x))]
    assert len(diffs) == 6 and max(diffs) <= 1e-5, diffs


@pytest.mark.parametrize('cls, kwargs',
                         [(DLA, {}),
                          (Res2NetDLA, dict(groups=8, base_width=4))])
def test_cpu_fast_paths_keep_the_outputs(cls, kwargs):
    """Channels-last CPU inference and the deploy form (BN folded into
    every conv, the split convs' too) compute the eager NCHW outputs."""
    torch.manual_seed(0)
    model = _randomise_bn(cls(cpu_channels_last=False, **kwargs)).eval()
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        want = model(x)
        model.cpu_channels_last = True
        fast = model(x)
        report = deploy(model)
        deployed = model(x)
    assert report.left == 0 and report.folded > 0
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    for outs in (fast, deployed):
        assert all(o.is_contiguous() for o in outs)
        for a, b in zip(outs, want):
            assert (a - b).abs().max() <= 1e-4 * b.abs().max()


@pytest.mark.parametrize('cls', [DLA, Res2NetDLA])
def test_from_scratch_blocks_start_as_identities(cls):
    """Trained from scratch, each block's last norm starts at zero (as
    mmdet's ResNet): the activations of a random network stay bounded with
    BN in eval mode, where otherwise every residual add doubles them."""
    torch.manual_seed(0)
    stds = {}
    for zero_init in (True, False):
        model = cls(zero_init_residual=zero_init)
        model.init_weights()
        norms = [
            m.norm3.weight for m in model.modules() if hasattr(m, 'norm3')
        ]
        assert len(norms) == 16  # levels 2-5: 2, 4, 8, 2 blocks
        assert all(w.eq(0).all() for w in norms) == zero_init
        with torch.no_grad():
            stds[zero_init] = model.eval()(torch.rand(1, 3, 64, 64))[-1].std()
    assert stds[True] < 10 < stds[False]


def test_timm_checkpoints_lack_only_the_unused_projections():
    # timm's dla60_res2net* drop the official code's unused projections;
    # the converter fills them in (their values never reach an output).
    model = build_variant('res2net_dla60')
    unused = model.unused_keys()
    assert sorted({k.rsplit('.project.', 1)[0]
                   for k in unused}) == ['level3', 'level4', 'level4.tree1']
    timm_state = {
        k: v
        for k, v in model.state_dict().items() if k not in unused
    }
    filled, keys = fill_unused_dla_keys(timm_state, model)
    assert sorted(keys) == sorted(unused)
    model.load_state_dict(filled, strict=True)
    # Every unused key is a parameter or a buffer of the model (a check
    # over no parameters would pass whatever they are), and only those
    # parameters are left out of training.
    params = dict(model.named_parameters())
    frozen = {k for k in unused if k in params}
    assert len(frozen) == 9  # 3 projections: conv weight, BN weight, bias
    buffers = {k for k, _ in model.named_buffers() if k in unused}
    assert frozen | buffers == set(unused)
    assert [k for k, p in params.items()
            if p.requires_grad == (k in frozen)] == []


def test_outputs_strides_and_defaults():
    model = Res2NetDLA(**variant_kwargs('res2next_dla60')).eval()
    with torch.no_grad():
        outs = model(torch.rand(2, 3, 64, 96))
    assert [o.shape[1:] for o in outs] == [(128, 16, 24), (256, 8, 12),
                                           (512, 4, 6), (1024, 2, 3)]
    model = Res2NetDLA(out_indices=(1, 3)).eval()
    with torch.no_grad():
        outs = model(torch.rand(1, 3, 64, 64))
    assert [o.shape[1:] for o in outs] == [(32, 32, 32), (256, 8, 8)]


def test_frozen_stages_and_norm_eval():
    model = Res2NetDLA(frozen_stages=2, norm_eval=False)
    model.train()
    for name in ('base_layer', 'level0', 'level1', 'level2'):
        module = getattr(model, name)
        assert not module.training
        assert not any(p.requires_grad for p in module.parameters())
    assert model.level3.training
    assert model.level3.tree1.tree1.conv1.weight.requires_grad
    model = Res2NetDLA(norm_eval=True).train()
    assert all(not m.training for m in model.modules()
               if isinstance(m, nn.BatchNorm2d))
    # A training step reaches every used parameter (DDP needs no
    # find_unused_parameters).
    model = Res2NetDLA(norm_eval=False).train()
    sum(o.mean() for o in model(torch.rand(2, 3, 32, 32))).backward()
    missing = [
        k for k, p in model.named_parameters()
        if p.requires_grad and p.grad is None
    ]
    assert missing == []


def test_with_cp_gives_the_same_outputs_and_gradients(
        same_outputs_and_gradients):
    """Checkpointed blocks recompute their activations in the backward
    pass: every output, the input's gradient and every parameter's
    gradient are those of the plain network (BN in training mode)."""
    torch.manual_seed(0)
    plain = Res2NetDLA(norm_eval=False)
    ckpt = Res2NetDLA(norm_eval=False, with_cp=True)
    ckpt.load_state_dict(plain.state_dict())
    same_outputs_and_gradients(
        plain, ckpt, torch.rand(2, 3, 32, 32), outputs=4)


def _norms(model: nn.Module) -> list:
    return [
        m for m in model.modules() if isinstance(m, (_BatchNorm, nn.GroupNorm))
    ]


@pytest.mark.parametrize('cls', [DLA, Res2NetDLA])
def test_syncbn_is_every_norm(cls):
    model = cls(norm_cfg=dict(type='SyncBN'))
    norms = _norms(model)
    assert len(norms) > 50
    assert all(isinstance(m, nn.SyncBatchNorm) for m in norms)


def test_gn_groups_adapt_over_the_splits_only():
    """GN with 16 groups (the most that DLA-60's 16-channel base layer
    takes): every norm is a GroupNorm; those over a Res2Net block's splits
    take the largest count that divides their channels, as in the Res2Net
    backbone, all others keep 16."""
    model = Res2NetDLA(
        norm_cfg=dict(type='GN', num_groups=16), out_indices=(5, ))
    norms = _norms(model)
    assert len(norms) > 50 and all(type(m) is nn.GroupNorm for m in norms)
    block = model.level2.tree1
    assert [n.num_groups for n in block.bns] == [4, 4, 4]  # 28 channels
    assert block.norm1.num_groups == 16  # 112 = 4 splits
    assert block.norm3.num_groups == 16  # 128
    level3 = model.level3.tree1.tree1
    assert [n.num_groups for n in level3.bns] == [8, 8, 8]  # 56 channels
    assert model.level4.tree1.tree1.tree1.bns[0].num_groups == 16  # 112
    split = {id(n) for m in model.modules() for n in getattr(m, 'bns', ())}
    assert {n.num_groups for n in norms if id(n) not in split} == {16}
    with torch.no_grad():
        assert model(torch.rand(1, 3, 32, 32))[0].shape == (1, 1024, 1, 1)
    plain = DLA(norm_cfg=dict(type='GN', num_groups=16))
    norms = _norms(plain)
    assert len(norms) > 50 and all(type(m) is nn.GroupNorm for m in norms)
    assert {n.num_groups for n in norms} == {16}


@pytest.mark.parametrize('kwargs, names', [
    (dict(depth=34), ['depth=34', '60']),
    (dict(scales=1), ['scales=1', '>= 2', 'DLA is the plain network']),
    (dict(groups=0), ['groups=0', '>= 1']),
    (dict(base_width=0), ['base_width=0']),
    (dict(out_indices=(6, )), ['out_indices=(6,)', '0..5']),
    (dict(frozen_stages=6), ['frozen_stages=6', '-1..5']),
    (dict(norm_cfg=dict(type='GN', num_groups=32)), ['num_groups=32', '16']),
])
def test_bad_arguments_name_themselves_in_one_line(kwargs, names):
    with pytest.raises(ValueError) as info:
        Res2NetDLA(**kwargs)
    message = str(info.value)
    assert '\n' not in message
    for name in names:
        assert name in message


@pytest.mark.parametrize('num_groups', [32, 3, None])
def test_plain_dla_gn_groups_must_divide_every_norm(num_groups):
    """The plain DLA's norms inside the blocks (64 .. 512 bottleneck
    channels) are checked with the levels' own."""
    norm_cfg = dict(type='GN')
    if num_groups is not None:
        norm_cfg['num_groups'] = num_groups
    with pytest.raises(ValueError) as info:
        DLA(norm_cfg=norm_cfg)
    assert str(info.value) == (
        f'norm_cfg GN num_groups={num_groups!r} must divide every norm '
        "layer's channels, but not 16; pick a divisor of all of "
        '[16, 32, 64, 128, 256, 512, 1024]')


def test_pretrained_from_a_local_file(tmp_path):
    source = _randomise_bn(Res2NetDLA())
    path = tmp_path / 'dla.pth'
    torch.save(dict(state_dict=source.state_dict()), path)
    model = Res2NetDLA(init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    model.init_weights()
    assert torch.equal(model.level5.root.conv.weight,
                       source.level5.root.conv.weight)


def test_converter_tool_official_timm_reverse_and_refusal(call_tool, tmp_path):
    tool = 'model_converters/res2net_to_backbone.py'
    torch.manual_seed(0)
    upstream = _randomise_bn(UpstreamDLA(CARDINALITY['res2net_dla60']))
    official = upstream.state_dict()
    unused = build_variant('res2net_dla60').unused_keys()
    timm = {k: v for k, v in official.items() if k not in unused}
    for label, state, filled in (('official', official, 0), ('timm', timm,
                                                             len(unused))):
        src, dst = tmp_path / f'{label}.pth', tmp_path / f'{label}-out.pth'
        torch.save(state, src)
        result = call_tool(tool, src, dst, '--variant', 'res2net_dla60')
        assert result.returncode == 0, result.stderr
        assert f'filled: {filled} ' in result.stdout
        assert "type='Res2NetDLA'" in result.stdout
        model = Res2NetDLA(
            init_cfg=dict(type='Pretrained', checkpoint=str(dst)))
        model.init_weights()
        assert torch.equal(model.level5.root.conv.weight,
                           upstream.level5.root.conv.weight)

    back = tmp_path / 'back.pth'
    result = call_tool(tool, tmp_path / 'official-out.pth', back, '--variant',
                       'res2net_dla60', '--reverse')
    assert result.returncode == 0, result.stderr
    restored = torch.load(back, weights_only=True)
    assert restored.keys() == official.keys() - {'fc.weight', 'fc.bias'}

    # Res2Net-DLA weights are not Res2NeXt-DLA weights: one line, no file.
    wrong = tmp_path / 'wrong.pth'
    result = call_tool(tool, tmp_path / 'official.pth', wrong, '--variant',
                       'res2next_dla60')
    assert result.returncode == 2
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith('error: ') and 'pick the --variant' in last
    assert not wrong.exists()
