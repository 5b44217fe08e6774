# Copyright (c) Res2Net-MMDet contributors. All rights reserved.
"""The Res2Net backbone: a Res2Net bottleneck inside mmdet's own ResNet.

Only the block is new (as in timm's ``res2net.py``): the stem, the stages,
freezing, ``norm_eval``, DCN selection and plugins all come from mmdet's
:class:`~mmdet.models.backbones.ResNet` and
:class:`~mmdet.models.layers.ResLayer`.

The backbone registers as ``Res2NetBackbone``; mmdet's own ``Res2Net`` stays
untouched. With the detector configs' settings its state dict has exactly
the keys and shapes of mmdet's ``Res2Net``, so the MMDetection model-zoo
checkpoints load into it unchanged and give the same outputs.
"""
import math
from typing import Callable, Optional, Sequence, Tuple

import torch
import torch.utils.checkpoint as cp
from mmcv.cnn import build_conv_layer, build_norm_layer
from mmdet.models.backbones.resnet import Bottleneck, ResNet
from mmdet.models.layers import ResLayer, SELayer
from mmdet.registry import MODELS
from mmdet.utils import ConfigType, OptConfigType, OptMultiConfig
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from ..errors import ConfigValueError
from .checkpoint import StrictPretrainedInit

# When the passed-through split of a stage's first block is average-pooled:
# 'strided' - only when that block downsamples (mmdet 3.x; the zoo detectors
#             were trained this way);
# 'always'  - also at stride 1, i.e. in layer1 (the official Res2Net code, so
#             the ImageNet weights were trained this way).
FIRST_BLOCK_POOL_RULES = ('strided', 'always')
STEM_TYPES = ('deep', 'basic')
PLUGIN_POSITIONS = ('after_conv1', 'after_conv2', 'after_conv3')


def _is_channels_last(x: Tensor) -> bool:
    """Whether ``x`` is laid out channels-last (and not also plain NCHW, as
    tensors with one channel or 1x1 maps are)."""
    return x.dim() == 4 and x.is_contiguous(
        memory_format=torch.channels_last) and not x.is_contiguous()


# A backbone's forward: an image batch to its multi-level outputs.
BackboneForward = Callable[[Tensor], Tuple[Tensor, ...]]


def forward_channels_last_on_cpu(forward: BackboneForward, x: Tensor, *,
                                 enabled: bool) -> Tuple[Tensor, ...]:
    """``forward(x)``, in channels-last for CPU inference (a backbone's
    ``cpu_channels_last``).

    oneDNN computes convs in NHWC, so an NCHW input costs reorders around
    every conv. When ``enabled``, an NCHW input on the CPU without gradients
    is converted once, ``forward`` runs channels-last and its outputs come
    back in NCHW (for the neck and mmcv's ops). Anything else (training, a
    GPU, an input already channels-last) runs ``forward`` as it is.
    """
    if not (enabled and x.device.type == 'cpu' and not torch.is_grad_enabled()
            and x.dim() == 4 and not _is_channels_last(x)):
        return forward(x)
    outs = forward(x.contiguous(memory_format=torch.channels_last))
    return tuple(out.contiguous() for out in outs)


def split_width(planes: int, base_width: float, base_channels: int,
                groups: int) -> int:
    """Channels of one split: ``base_width`` per group at ``base_channels``.
    """
    return math.floor(planes * base_width / base_channels) * groups


def split_norm_cfg(norm_cfg: ConfigType, channels: int) -> ConfigType:
    """The norm config of a layer over Res2Net's splits: ``conv1``'s output
    (all splits) or one split conv's (``channels`` wide).

    GN's ``num_groups`` (32 in mmdet's GN configs) rarely divides a split's
    width (26, 52, 104, 208 in 26w×4s): such a layer uses the largest group
    count that divides both, ``gcd(num_groups, channels)`` (2 groups of 13
    for a 26-channel split, 8 for conv1's 104). Any other norm, or a GN
    whose groups divide the channels, keeps its config.
    """
    if norm_cfg.get('type') != 'GN' or channels % norm_cfg['num_groups'] == 0:
        return norm_cfg
    return dict(
        norm_cfg, num_groups=math.gcd(norm_cfg['num_groups'], channels))


def _check_choice(name: str, value, allowed: Sequence) -> None:
    if value not in allowed:
        raise ConfigValueError(
            f'{name}={value!r} is not supported; choose one of '
            f'{", ".join(repr(a) for a in allowed)}')


def check_int(name: str, value, *, minimum: int, hint: str) -> None:
    """Raise one line unless ``value`` is an integer >= ``minimum``."""
    if not isinstance(value, int) or value < minimum:
        raise ConfigValueError(
            f'{name}={value!r} is not supported; use an integer >= '
            f'{minimum} ({hint})')


def conv_norm(conv: nn.Module,
              norm: nn.Module,
              x: Tensor,
              *,
              relu: bool = False) -> Tensor:
    """``norm(conv(x))``, then an in-place ReLU if asked.

    An eval-mode BatchNorm is an affine map per channel, so it is folded
    into the conv's weight and bias for this call: one conv with a bias
    instead of a conv and a pass of the BN over the activations (about 4%
    of a Res2Net-101's eval time on a CPU). Scaling the weight costs a pass
    over the weight on every call, so a pair is folded only where the
    output is larger than the weight (most of a network at detection
    sizes; not the last stage's convs on a small map). The module's
    parameters and buffers are not changed, and gradients reach the conv
    and the BN's affine terms as without folding (``norm_eval``
    training). Any other pair (training-mode BN, GN, a deformable conv, a
    BN already folded into an ``nn.Identity``) runs as two modules, and so
    does every pair under a ``torch.jit`` trace, so that a FLOP count
    (mmengine's ``FlopAnalyzer`` traces) or an export sees each module as
    it is.
    """
    if (type(conv) is nn.Conv2d and isinstance(norm, _BatchNorm)
            and not torch.jit.is_tracing() and not norm.training
            and norm.affine and norm.running_var is not None
            and _output_is_larger(conv, x)):
        scale = norm.weight * torch.rsqrt(norm.running_var + norm.eps)
        bias = norm.bias - norm.running_mean * scale
        if conv.bias is not None:
            bias = bias + conv.bias * scale
        out = conv._conv_forward(x, conv.weight * scale.view(-1, 1, 1, 1),
                                 bias)
    else:
        out = norm(conv(x))
    return out.relu_() if relu else out


def _output_is_larger(conv: nn.Conv2d, x: Tensor) -> bool:
    """Whether ``conv(x)`` has more elements than ``conv.weight``."""
    n, _, height, width = x.shape
    positions = n * (height // conv.stride[0]) * (width // conv.stride[1])
    return positions * conv.out_channels > conv.weight.numel()


def _identity(downsample: Optional[nn.Module], x: Tensor) -> Tensor:
    """The residual branch: ``x``, or ``downsample(x)`` with its final
    conv and norm through :func:`conv_norm`."""
    if downsample is None:
        return x
    if isinstance(downsample, nn.Sequential) and len(downsample) >= 2:
        *first, conv, norm = downsample
        for module in first:  # the avg_down pool
            x = module(x)
        return conv_norm(conv, norm, x)
    return downsample(x)


class Bottle2neck(Bottleneck):
    """A Res2Net bottleneck: hierarchical residual-like 3x3 convolutions.

    After ``conv1`` the features are split into ``scales`` groups of
    ``width`` channels. Split ``i`` (``i < scales - 1``) goes through
    ``convs[i]``; in a normal block it first receives the previous split's
    output, so later splits see ever larger receptive fields. The last split
    is passed through untouched (the paper draws the same thing mirrored).
    The first block of a stage (a *stage block*) convolves each split on its
    own, and average-pools the passed-through split to the block's stride.

    Args:
        inplanes: Input channels.
        planes: Bottleneck channels before the 4x expansion.
        scales: Number of splits ``s``; must be at least 2.
        base_width: Channels per split in the first stage when ``planes ==
            base_channels``; they scale with ``planes`` in later stages.
        base_channels: The backbone's ``base_channels``.
        groups: Cardinality of the split convs (Res2NeXt); each split then
            has ``groups`` times the width.
        se_ratio: Squeeze ratio of an SE block before the residual add
            (SE-Res2Net); None for no SE block.
        first_block_pool: When a stage block pools its passed-through split,
            one of :data:`FIRST_BLOCK_POOL_RULES`.
        dcn: Config of a deformable conv used for the split convs.
        plugins: Plugins as in mmdet's ``Bottleneck``; the ``after_conv1``
            and ``after_conv2`` ones see ``width * scales`` channels.
        **kwargs: ``stride``, ``dilation``, ``downsample``, ``style``,
            ``with_cp``, ``conv_cfg``, ``norm_cfg``, ``init_cfg`` of mmdet's
            ``Bottleneck``.
    """
    expansion = 4

    def __init__(self,
                 inplanes: int,
                 planes: int,
                 *,
                 scales: int = 4,
                 base_width: int = 26,
                 base_channels: int = 64,
                 groups: int = 1,
                 se_ratio: Optional[int] = None,
                 first_block_pool: str = 'strided',
                 dcn: OptConfigType = None,
                 plugins: Optional[list] = None,
                 **kwargs) -> None:
        # DCN and plugins are set up below with this block's channel counts;
        # the parent would build them for a plain 3x3 conv of `planes`.
        super().__init__(inplanes, planes, dcn=None, plugins=None, **kwargs)
        width = split_width(planes, base_width, base_channels, groups)
        self.scales = scales
        self.width = width
        # A stage block is the one that changes the shape: it downsamples or
        # projects the identity (as in timm's Res2Net).
        self.is_stage_block = (self.stride != 1 or self.downsample is not None)
        self.dcn = dcn
        self.with_dcn = dcn is not None

        # Replace the parent's conv1/conv3 (sized for a single 3x3 conv of
        # `planes` channels) and drop its conv2.
        del self.conv2, self._modules[self.norm2_name]
        self.conv1 = build_conv_layer(
            self.conv_cfg,
            inplanes,
            width * scales,
            kernel_size=1,
            stride=self.conv1_stride,
            bias=False)
        self.add_module(
            self.norm1_name,
            build_norm_layer(
                split_norm_cfg(self.norm_cfg, width * scales),
                width * scales,
                postfix=1)[1])
        self.conv3 = build_conv_layer(
            self.conv_cfg,
            width * scales,
            planes * self.expansion,
            kernel_size=1,
            bias=False)
        self.add_module(
            self.norm3_name,
            build_norm_layer(
                self.norm_cfg, planes * self.expansion, postfix=3)[1])
        self.se = SELayer(
            planes * self.expansion, ratio=se_ratio,
            conv_cfg=self.conv_cfg) if se_ratio is not None else None

        split_conv_cfg = self.conv_cfg
        if dcn is not None:
            dcn = dict(dcn)
            if not dcn.pop('fallback_on_stride', False):
                split_conv_cfg = dcn
        self.convs = nn.ModuleList(
            build_conv_layer(
                split_conv_cfg,
                width,
                width,
                kernel_size=3,
                stride=self.conv2_stride,
                padding=self.dilation,
                dilation=self.dilation,
                groups=groups,
                bias=False) for _ in range(scales - 1))
        self.bns = nn.ModuleList(
            build_norm_layer(
                split_norm_cfg(self.norm_cfg, width), width, postfix=i + 1)[1]
            for i in range(scales - 1))
        pool = self.is_stage_block and (first_block_pool == 'always'
                                        or self.conv2_stride != 1)
        self.pool = nn.AvgPool2d(
            kernel_size=3, stride=self.conv2_stride,
            padding=1) if pool else None

        self.plugins = plugins
        self.with_plugins = plugins is not None
        if plugins is not None:
            # Plugins after conv1 and the split convs see the splits' width.
            channels = dict(
                after_conv1=width * scales,
                after_conv2=width * scales,
                after_conv3=planes * self.expansion)
            names = {
                position:
                self.make_block_plugins(
                    channels[position],
                    [p['cfg'] for p in plugins if p['position'] == position])
                for position in PLUGIN_POSITIONS
            }
            self.after_conv1_plugin_names = names['after_conv1']
            self.after_conv2_plugin_names = names['after_conv2']
            self.after_conv3_plugin_names = names['after_conv3']

    def _split_convs(self, x: Tensor) -> Tensor:
        """The hierarchical 3x3 convs that replace a bottleneck's conv2."""
        # A channel slice is a view that no conv kernel reads as it is
        # (except of a batch-1 NCHW tensor): copy it into the layout of
        # ``x``. A plain .contiguous() would turn channels-last slices into
        # NCHW and the convs after them into NCHW convs with reorders (the
        # official code, timm and mmdet do that: 11% of a channels-last
        # Res2Net-101 forward on a CPU).
        layout = torch.channels_last if _is_channels_last(
            x) else torch.contiguous_format
        splits = torch.split(x, self.width, dim=1)
        outs = []
        for i, (conv, bn) in enumerate(zip(self.convs, self.bns)):
            sp = splits[i]
            if i > 0 and not self.is_stage_block:
                sp = sp + outs[-1]
            outs.append(
                conv_norm(
                    conv, bn, sp.contiguous(memory_format=layout), relu=True))
        last = splits[-1]
        outs.append(self.pool(last) if self.pool is not None else last)
        return torch.cat(outs, dim=1)

    def forward(self, x: Tensor) -> Tensor:
        """Forward function."""

        def _inner_forward(x: Tensor) -> Tensor:
            out = conv_norm(self.conv1, self.norm1, x, relu=True)
            if self.with_plugins:
                out = self.forward_plugin(out, self.after_conv1_plugin_names)
            out = self._split_convs(out)
            if self.with_plugins:
                out = self.forward_plugin(out, self.after_conv2_plugin_names)
            out = conv_norm(self.conv3, self.norm3, out)
            if self.se is not None:
                out = self.se(out)
            if self.with_plugins:
                out = self.forward_plugin(out, self.after_conv3_plugin_names)
            out += _identity(self.downsample, x)  # in place, as mmdet's
            return out

        if self.with_cp and x.requires_grad:
            out = cp.checkpoint(_inner_forward, x, use_reentrant=False)
        else:
            out = _inner_forward(x)
        return self.relu(out)


@MODELS.register_module()
class Res2NetBackbone(StrictPretrainedInit, ResNet):
    """Res2Net backbone (Gao et al., TPAMI 2021) on mmdet's ResNet.

    The defaults give Res2Net-v1b ("v1d" in mmdet's weight names): the deep
    3x3 stem and the average-pool downsample; ``stem_type='basic'`` with
    ``avg_down=False`` gives the original v1 network.

    Args:
        depth: 50, 101, 152 or 200.
        scales: Number of splits per block, at least 2.
        base_width: Channels per split (per group, with ``groups``) in the
            first stage (26 for the 26w×4s models); must give at least one
            channel.
        groups: Cardinality of the split convs: 1 for Res2Net, e.g. 8 for
            Res2NeXt-50 (with ``base_width=4``).
        se_ratio: Squeeze ratio of an SE block before each residual add
            (SE-Res2Net, e.g. 16); None for none.
        stem_type: ``'deep'`` (three 3x3 convs) or ``'basic'`` (one 7x7 conv).
        avg_down: Downsample the identity with an average pool and a 1x1
            conv instead of a strided 1x1 conv.
        first_block_pool: When a stage's first block pools the passed-through
            split, see :data:`FIRST_BLOCK_POOL_RULES`.
        in_channels: Input image channels.
        stem_channels: Stem output channels; ``base_channels`` by default.
        base_channels: Bottleneck channels of the first stage.
        num_stages: Number of stages, 1 to 4.
        strides: Stride of the first block of each stage.
        dilations: Dilation of each stage.
        out_indices: Stages whose outputs are returned.
        style: ``'pytorch'`` (stride in the 3x3 convs) or ``'caffe'`` (stride
            in the first 1x1 conv).
        frozen_stages: Stages (stem = 0) whose weights and norm statistics
            are frozen; -1 freezes nothing.
        conv_cfg: Config of the convolutions.
        norm_cfg: Config of the norm layers: BN, SyncBN or GN (``num_groups``
            must divide every layer's channels, including a split's width).
        norm_eval: Keep norm layers in eval mode while training.
        dcn: Deformable conv config for the split convs of the stages in
            ``stage_with_dcn``.
        stage_with_dcn: One flag per stage.
        plugins: mmdet ResNet plugins (``cfg``, ``position``, ``stages``).
        with_cp: Trade compute for memory with activation checkpointing.
        cpu_channels_last: At inference (no gradients) on the CPU, run the
            stages in channels-last when the input is NCHW, and return NCHW
            outputs (faster with oneDNN; the outputs change by float
            rounding only). None: on unless ``dcn`` or ``plugins`` are set,
            whose mmcv ops read NCHW only; True there is an error.
        zero_init_residual: Zero-init each block's last norm so blocks start
            as identities (only when training from scratch).
        init_cfg: Initialisation; ``dict(type='Pretrained', checkpoint=...)``
            takes a local file, a URL or an ``open-mmlab://`` name and loads it
            strictly (optional ``prefix``, e.g. ``'backbone.'``).
    """

    arch_settings = {
        50: (Bottle2neck, (3, 4, 6, 3)),
        101: (Bottle2neck, (3, 4, 23, 3)),
        152: (Bottle2neck, (3, 8, 36, 3)),
        200: (Bottle2neck, (3, 24, 36, 3)),
    }

    def __init__(self,
                 *,
                 depth: int,
                 scales: int = 4,
                 base_width: int = 26,
                 groups: int = 1,
                 se_ratio: Optional[int] = None,
                 stem_type: str = 'deep',
                 avg_down: bool = True,
                 first_block_pool: str = 'strided',
                 in_channels: int = 3,
                 stem_channels: Optional[int] = None,
                 base_channels: int = 64,
                 num_stages: int = 4,
                 strides: Sequence[int] = (1, 2, 2, 2),
                 dilations: Sequence[int] = (1, 1, 1, 1),
                 out_indices: Sequence[int] = (0, 1, 2, 3),
                 style: str = 'pytorch',
                 frozen_stages: int = -1,
                 conv_cfg: OptConfigType = None,
                 norm_cfg: ConfigType = dict(type='BN', requires_grad=True),
                 norm_eval: bool = True,
                 dcn: OptConfigType = None,
                 stage_with_dcn: Sequence[bool] = (False, False, False, False),
                 plugins: Optional[list] = None,
                 with_cp: bool = False,
                 zero_init_residual: bool = True,
                 cpu_channels_last: Optional[bool] = None,
                 init_cfg: OptMultiConfig = None) -> None:
        self._validate(
            depth=depth,
            scales=scales,
            base_width=base_width,
            groups=groups,
            se_ratio=se_ratio,
            stem_type=stem_type,
            first_block_pool=first_block_pool,
            base_channels=base_channels,
            conv_cfg=conv_cfg,
            stem_channels=stem_channels or base_channels,
            num_stages=num_stages,
            strides=strides,
            dilations=dilations,
            out_indices=out_indices,
            style=style,
            frozen_stages=frozen_stages,
            norm_cfg=norm_cfg,
            dcn=dcn,
            stage_with_dcn=stage_with_dcn,
            plugins=plugins,
            cpu_channels_last=cpu_channels_last)
        # Auto: where every op of the stages takes channels-last tensors.
        self.cpu_channels_last = (dcn is None and not plugins) \
            if cpu_channels_last is None else cpu_channels_last
        # What every block gets besides ResNet's arguments; read by
        # make_res_layer(), which ResNet.__init__ calls.
        self.block_cfg = dict(
            scales=scales,
            base_width=base_width,
            groups=groups,
            se_ratio=se_ratio,
            first_block_pool=first_block_pool)
        # ResNet only zero-inits its own Bottleneck class, so do it here.
        self.zero_init_blocks = zero_init_residual and init_cfg is None
        super().__init__(
            depth=depth,
            in_channels=in_channels,
            stem_channels=stem_channels,
            base_channels=base_channels,
            num_stages=num_stages,
            strides=strides,
            dilations=dilations,
            out_indices=out_indices,
            style=style,
            deep_stem=stem_type == 'deep',
            avg_down=avg_down,
            frozen_stages=frozen_stages,
            conv_cfg=conv_cfg,
            norm_cfg=norm_cfg,
            norm_eval=norm_eval,
            dcn=dcn,
            stage_with_dcn=stage_with_dcn,
            plugins=plugins,
            with_cp=with_cp,
            zero_init_residual=zero_init_residual,
            init_cfg=init_cfg)
        self.stem_type = stem_type

    @classmethod
    def _validate(cls, *, depth, scales, base_width, groups, se_ratio,
                  stem_type, first_block_pool, base_channels, conv_cfg,
                  stem_channels, num_stages, strides, dilations, out_indices,
                  style, frozen_stages, norm_cfg, dcn, stage_with_dcn, plugins,
                  cpu_channels_last) -> None:
        """Reject settings that would fail later or build the wrong net."""
        if cpu_channels_last and (dcn is not None or plugins):
            raise ConfigValueError(
                'cpu_channels_last=True with dcn or plugins: mmcv\'s '
                'deformable convs (and some plugins) read NCHW tensors only; '
                'leave cpu_channels_last=None (auto: off here) or set False')
        _check_choice('depth', depth, sorted(cls.arch_settings))
        _check_choice('stem_type', stem_type, STEM_TYPES)
        _check_choice('first_block_pool', first_block_pool,
                      FIRST_BLOCK_POOL_RULES)
        _check_choice('style', style, ('pytorch', 'caffe'))
        _check_choice('num_stages', num_stages, (1, 2, 3, 4))
        check_int(
            'scales', scales, minimum=2, hint='scales=1 is a plain ResNet')
        check_int(
            'groups',
            groups,
            minimum=1,
            hint='1 for Res2Net, e.g. 8 for Res2NeXt')
        width = split_width(base_channels, base_width, base_channels, groups)
        if width < 1 or base_width <= 0:
            raise ConfigValueError(
                f'base_width={base_width!r} gives {width} channels per split;'
                ' use base_width >= 1 (e.g. 26, 14 or 48)')
        if se_ratio is not None and (not isinstance(se_ratio, int)
                                     or not 1 <= se_ratio <= base_channels):
            raise ConfigValueError(
                f'se_ratio={se_ratio!r} is not supported; use None (no SE '
                f'block) or an integer in 1..{base_channels} (e.g. 16)')
        if dcn is not None and conv_cfg is not None:
            raise ConfigValueError(
                f'dcn={dict(dcn)!r} with conv_cfg={dict(conv_cfg)!r}: the '
                'split convs are either deformable or conv_cfg convs; set '
                'one of them to None')
        for name, value in (('strides', strides), ('dilations', dilations),
                            ('stage_with_dcn', stage_with_dcn)):
            if name == 'stage_with_dcn' and dcn is None:
                continue
            if len(value) != num_stages:
                raise ConfigValueError(
                    f'{name}={tuple(value)!r} needs one entry per stage '
                    f'(num_stages={num_stages})')
        if not out_indices or not all(0 <= i < num_stages
                                      for i in out_indices):
            raise ConfigValueError(
                f'out_indices={tuple(out_indices)!r} must be non-empty stage '
                f'indices in 0..{num_stages - 1}')
        if not -1 <= frozen_stages <= num_stages:
            raise ConfigValueError(
                f'frozen_stages={frozen_stages!r} must be in '
                f'-1..{num_stages} (-1 freezes nothing, 0 the stem)')
        for plugin in plugins or ():
            _check_choice('plugins[].position', plugin.get('position'),
                          PLUGIN_POSITIONS)
        if norm_cfg.get('type') == 'GN':
            num_groups = norm_cfg.get('num_groups')
            # The channels of the norm layers outside the splits (stem,
            # expanded outputs); those over the splits adapt their groups
            # (split_norm_cfg).
            channels = [stem_channels]
            if stem_type == 'deep':
                channels.append(stem_channels // 2)
            channels += [base_channels * 2**i * 4 for i in range(num_stages)]
            bad = [c for c in channels if not num_groups or c % num_groups]
            if bad:
                raise ConfigValueError(
                    f'norm_cfg GN num_groups={num_groups!r} must divide the '
                    f'channels of the stem and of each stage\'s output, but '
                    f'not {bad[0]}; pick a divisor of all of '
                    f'{sorted(set(channels))}')

    def make_res_layer(self, **kwargs) -> ResLayer:
        """Build one stage from Res2Net blocks with mmdet's ``ResLayer``."""
        if self.zero_init_blocks:
            kwargs['init_cfg'] = dict(
                type='Constant', val=0, override=dict(name='norm3'))
        layer = ResLayer(
            base_channels=self.base_channels, **self.block_cfg, **kwargs)
        first = layer[0]
        if kwargs['avg_down'] and first.downsample is not None and len(
                first.downsample) == 2:
            # ResLayer leaves out the average pool when the stride is 1;
            # mmdet's Res2Net keeps a (no-op) pool there, so its checkpoints
            # name the conv and norm `downsample.1` and `downsample.2`.
            first.downsample = nn.Sequential(nn.Identity(), *first.downsample)
        return layer

    def forward(self, x: Tensor) -> Tuple[Tensor, ...]:
        """mmdet's ResNet forward; inference on the CPU in channels-last.

        oneDNN, the CPU's conv library, computes in NHWC: an NCHW input
        costs reorders around every conv, and Res2Net has five convs per
        block. With ``cpu_channels_last``, an NCHW input on the CPU without
        gradients (testing, inference) is converted once, the stages run
        channels-last, and the outputs are returned in NCHW again, for the
        neck and mmcv's ops: about 0.8x the time of the NCHW forward
        (Res2Net-101, 512x512, batch 1, 2 threads). Training keeps the
        input's layout: there it saved 2%, and a backward in another layout
        rounds differently (gradients of a random R2-101 moved by 3e-4,
        relative, as mmdet's own Res2Net's do in channels-last).
        """
        return forward_channels_last_on_cpu(
            super().forward, x, enabled=self.cpu_channels_last)

    def train(self, mode: bool = True) -> 'Res2NetBackbone':
        """Set the mode, keeping frozen stages and ``norm_eval`` BNs in eval.

        mmdet's ``ResNet.train`` returns None; ``nn.Module.train`` (and so
        ``eval``) must return the module, which chained calls rely on.
        """
        super().train(mode)
        return self
