# Copyright (c) Res2Net-MMDet contributors. All rights reserved.
"""Res2Net-DLA: the Res2Net block inside Deep Layer Aggregation (DLA-60).

The paper's third integration, as in the official ``dla.py``
(``res2net_dla60``, ``res2next_dla60``). The network is written once, as
:class:`DLA` (DLA-60 with its plain bottleneck, the paper's baseline);
:class:`Res2NetDLA` only swaps the block for the project's
:class:`~.backbone.Bottle2neck` (split convs, stage-block pooling, BN
folding) with what DLA does differently: expansion 2 and the residual
handed in by the tree.

State-dict keys are the official ones (``base_layer``, ``level0`` ..
``level5``, ``tree1``, ``tree2``, ``root.conv``, ``root.bn``, ``project``,
block keys ``conv1 bn1 convs.i bns.i conv3 bn3``, or ``conv1 bn1 conv2 bn2
conv3 bn3`` in the plain DLA); the only difference is
that the classifier ``fc.*`` is not part of the backbone. With a GN
``norm_cfg`` mmcv names the blocks' norms ``gn1``/``gn3`` instead of
``bn1``/``bn3``, as in :class:`~.backbone.Res2NetBackbone`.

The official trees of more than one level also build a ``project`` (1x1
conv + BN) whose output their forward computes and then ignores (the
subtree recomputes its own residual). Those modules are kept, so that the
official checkpoints load strictly and the parameter counts are the
published ones (21.146M / 17.330M with the 1000-class head), but they are
never run and their parameters do not require gradients: the outputs are
the official ones, no FLOPs are wasted, and DDP needs no
``find_unused_parameters``. timm's ``dla60_res2net``/``dla60_res2next``
leave them out; :meth:`Res2NetDLA.unused_keys` names them for converters.
"""
from typing import List, Optional, Sequence, Tuple

import torch
import torch.utils.checkpoint as cp
from mmcv.cnn import build_conv_layer, build_norm_layer
from mmdet.models.backbones.resnet import Bottleneck
from mmdet.registry import MODELS
from mmdet.utils import ConfigType, OptConfigType, OptMultiConfig
from mmengine.model import BaseModule
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from ..errors import ConfigValueError
from .backbone import (Bottle2neck, _check_choice, check_int, conv_norm,
                       forward_channels_last_on_cpu, split_width)
from .checkpoint import StrictPretrainedInit

# The official DLA's widths are relative to a 64-channel bottleneck.
_BASE_CHANNELS = 64


class _TreeBlock:
    """What DLA's blocks share: expansion 2, and the residual handed in.

    In DLA the tree hands the residual in (its max-pooled and projected
    input) instead of the block owning a ``downsample``. A subclass defines
    :meth:`transform` (the block without the residual add and final ReLU);
    ``with_cp`` checkpoints it.
    """
    expansion = 2

    def transform(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def forward(self, x: Tensor, residual: Optional[Tensor] = None) -> Tensor:
        """``relu(transform(x) + residual)``; the residual is ``x`` if None.
        """

        def _inner_forward(x: Tensor, residual: Tensor) -> Tensor:
            return self.transform(x) + residual

        if residual is None:
            residual = x
        if self.with_cp and x.requires_grad:
            out = cp.checkpoint(
                _inner_forward, x, residual, use_reentrant=False)
        else:
            out = _inner_forward(x, residual)
        return self.relu(out)


class DLABottleneck(_TreeBlock, Bottleneck):
    """DLA's plain bottleneck (DLA-60 without Res2Net): mmdet's
    ``Bottleneck`` with expansion 2, as the official DLA's ``Bottleneck``
    (keys ``conv1 bn1 conv2 bn2 conv3 bn3``, the stride on ``conv2``).

    Args:
        inplanes: Input channels.
        planes: Output channels (twice the bottleneck channels).
        **kwargs: ``stride``, ``dilation``, ``with_cp``, ``conv_cfg``,
            ``norm_cfg`` of mmdet's ``Bottleneck``.
    """

    def __init__(self, inplanes: int, planes: int, **kwargs) -> None:
        super().__init__(inplanes, planes // self.expansion, **kwargs)

    def transform(self, x: Tensor) -> Tensor:
        out = conv_norm(self.conv1, self.norm1, x, relu=True)
        out = conv_norm(self.conv2, self.norm2, out, relu=True)
        return conv_norm(self.conv3, self.norm3, out)


class DLABottle2neck(_TreeBlock, Bottle2neck):
    """The Res2Net block of DLA: a :class:`Bottle2neck` with expansion 2.

    With no ``downsample`` of its own, a *stage block* is exactly one with
    stride != 1; it average-pools the passed-through split to that stride,
    as the official code does.

    Args:
        inplanes: Input channels.
        planes: Output channels (twice the bottleneck channels).
        scales: Number of splits.
        base_width: Channels per split (per group) at 64 bottleneck
            channels: 28 for Res2Net-DLA, 4 (with ``groups=8``) for
            Res2NeXt-DLA, i.e. ``floor(planes * 28 / 128)`` and
            ``planes * 8 // 32`` channels per split.
        groups: Cardinality of the split convs.
        **kwargs: ``stride``, ``dilation``, ``with_cp``, ``conv_cfg``,
            ``norm_cfg`` of mmdet's ``Bottleneck``.
    """

    def __init__(self, inplanes: int, planes: int, *, scales: int,
                 base_width: float, groups: int, **kwargs) -> None:
        super().__init__(
            inplanes,
            planes // self.expansion,
            scales=scales,
            base_width=base_width,
            base_channels=_BASE_CHANNELS,
            groups=groups,
            **kwargs)

    def transform(self, x: Tensor) -> Tensor:
        out = conv_norm(self.conv1, self.norm1, x, relu=True)
        out = self._split_convs(out)
        return conv_norm(self.conv3, self.norm3, out)


class DLARoot(BaseModule):
    """Aggregation node: 1x1 conv over the concatenated children, norm,
    ReLU (DLA-60 has no root residual)."""

    def __init__(self, in_channels: int, out_channels: int, *,
                 conv_cfg: OptConfigType, norm_cfg: ConfigType) -> None:
        super().__init__()
        self.conv = build_conv_layer(
            conv_cfg, in_channels, out_channels, 1, bias=False)
        self.add_module('bn', build_norm_layer(norm_cfg, out_channels)[1])

    def forward(self, *children: Tensor) -> Tensor:
        return conv_norm(
            self.conv, self.bn, torch.cat(children, dim=1), relu=True)


class DLATree(BaseModule):
    """A DLA tree: two blocks and a root, or two subtrees.

    A one-level tree runs ``tree1`` (with the stride; its residual is the
    max-pooled input, projected when the channels change) and ``tree2``,
    then the root over ``(x2, x1, *children)``. A deeper tree passes its
    first subtree's output on as a child of the second, whose root then
    aggregates it. With ``level_root`` the pooled input is a child too.

    Args:
        levels: Depth of the tree.
        in_channels: Input channels.
        out_channels: Output channels.
        stride: Stride of the first block.
        level_root: Also aggregate the (pooled) input.
        root_dim: Channels into the root; 0 for ``2 * out_channels``.
        block: The block class, :class:`DLABottleneck` or
            :class:`DLABottle2neck`.
        block_cfg: Keyword arguments of every block besides the channels,
            stride and layer configs.
        conv_cfg: Config of the convolutions.
        norm_cfg: Config of the norm layers.
    """

    def __init__(self, *, levels: int, in_channels: int, out_channels: int,
                 stride: int, level_root: bool, root_dim: int, block: type,
                 block_cfg: dict, conv_cfg: OptConfigType,
                 norm_cfg: ConfigType) -> None:
        super().__init__()
        if root_dim == 0:
            root_dim = 2 * out_channels
        if level_root:
            root_dim += in_channels
        common = dict(
            block=block,
            block_cfg=block_cfg,
            conv_cfg=conv_cfg,
            norm_cfg=norm_cfg)
        blocks = dict(conv_cfg=conv_cfg, norm_cfg=norm_cfg, **block_cfg)
        if levels == 1:
            self.tree1 = block(
                in_channels, out_channels, stride=stride, **blocks)
            self.tree2 = block(out_channels, out_channels, stride=1, **blocks)
            self.root = DLARoot(
                root_dim, out_channels, conv_cfg=conv_cfg, norm_cfg=norm_cfg)
        else:
            self.tree1 = DLATree(
                levels=levels - 1,
                in_channels=in_channels,
                out_channels=out_channels,
                stride=stride,
                level_root=False,
                root_dim=0,
                **common)
            self.tree2 = DLATree(
                levels=levels - 1,
                in_channels=out_channels,
                out_channels=out_channels,
                stride=1,
                level_root=False,
                root_dim=root_dim + out_channels,
                **common)
        self.levels = levels
        self.level_root = level_root
        self.downsample = nn.MaxPool2d(
            stride, stride=stride) if stride > 1 else None
        self.project = None
        if in_channels != out_channels:
            self.project = nn.Sequential(
                build_conv_layer(
                    conv_cfg, in_channels, out_channels, 1, bias=False),
                build_norm_layer(norm_cfg, out_channels)[1])
            if levels > 1:  # the official code's unused projection
                self.project.requires_grad_(False)

    def forward(self,
                x: Tensor,
                children: Optional[List[Tensor]] = None) -> Tensor:
        children = [] if children is None else children
        if self.levels == 1 or self.level_root:
            bottom = x if self.downsample is None else self.downsample(x)
        if self.level_root:
            children.append(bottom)
        if self.levels == 1:
            residual = bottom if self.project is None else conv_norm(
                self.project[0], self.project[1], bottom)
            x1 = self.tree1(x, residual)
            x2 = self.tree2(x1)
            return self.root(x2, x1, *children)
        x1 = self.tree1(x)
        children.append(x1)
        return self.tree2(x1, children)


@MODELS.register_module()
class DLA(StrictPretrainedInit, BaseModule):
    """DLA-60 (Yu et al., CVPR 2018) with its plain bottleneck: the network
    Res2Net-DLA is built on, and its baseline.

    ``base_layer`` (7x7 conv, stride 1), ``level0`` and ``level1`` (3x3
    conv levels, the second with stride 2) and the trees ``level2`` to
    ``level5``, each with stride 2: the levels have strides 1, 2, 4, 8,
    16, 32 and 16, 32, 128, 256, 512, 1024 channels (DLA-60). The tree,
    root and level structure is written once, here; a subclass changes the
    block (``block``) and what each block gets (``block_cfg``), as
    :class:`Res2NetDLA` does. State-dict keys are the official DLA's,
    without the classifier ``fc.*``.

    Args:
        depth: DLA depth; 60.
        in_channels: Input image channels.
        out_indices: Levels (0..5) whose outputs are returned; the default
            ``(2, 3, 4, 5)`` are the strides 4 to 32 an FPN takes.
        frozen_stages: Freeze ``base_layer`` and ``level0`` .. this level
            (weights and norm statistics); -1 freezes nothing.
        conv_cfg: Config of the convolutions.
        norm_cfg: Config of the norm layers: BN, SyncBN or GN
            (``num_groups`` must divide every norm layer's channels).
        norm_eval: Keep BN layers in eval mode while training.
        with_cp: Checkpoint each block's activations to save memory.
        zero_init_residual: Zero-init each block's last norm so blocks start
            as identities (only when training from scratch, ``init_cfg``
            None): without it a random DLA's activations grow with every
            residual add (BN in eval mode does not rescale them).
        cpu_channels_last: At inference (no gradients) on the CPU, run an
            NCHW input in channels-last and return NCHW outputs (see
            :func:`~.backbone.forward_channels_last_on_cpu`); the outputs
            are the same up to float rounding.
        init_cfg: Initialisation; ``dict(type='Pretrained', checkpoint=...)``
            loads converted weights strictly (optional ``prefix``).
    """
    arch_settings = {
        60: ((1, 1, 1, 2, 3, 1), (16, 32, 128, 256, 512, 1024)),
    }
    block: type = DLABottleneck

    def __init__(self,
                 *,
                 depth: int = 60,
                 in_channels: int = 3,
                 out_indices: Sequence[int] = (2, 3, 4, 5),
                 frozen_stages: int = -1,
                 conv_cfg: OptConfigType = None,
                 norm_cfg: ConfigType = dict(type='BN', requires_grad=True),
                 norm_eval: bool = True,
                 with_cp: bool = False,
                 zero_init_residual: bool = True,
                 cpu_channels_last: bool = True,
                 init_cfg: OptMultiConfig = None) -> None:
        # Trained from scratch, each block starts as an identity.
        block_init = None
        if zero_init_residual and init_cfg is None:
            block_init = dict(
                type='Constant', val=0, override=dict(name='norm3'))
        if init_cfg is None:
            init_cfg = [
                dict(type='Kaiming', layer='Conv2d'),
                dict(
                    type='Constant', val=1, layer=['_BatchNorm', 'GroupNorm'])
            ]
        super().__init__(init_cfg=init_cfg)
        self._validate(
            depth=depth,
            out_indices=out_indices,
            frozen_stages=frozen_stages,
            norm_cfg=norm_cfg)
        levels, channels = self.arch_settings[depth]
        self.depth = depth
        self.channels = channels
        self.out_indices = tuple(out_indices)
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval
        self.cpu_channels_last = cpu_channels_last
        self.feat_dim = channels[-1]

        def conv_level(inplanes: int, planes: int, kernel: int,
                       stride: int) -> nn.Sequential:
            return nn.Sequential(
                build_conv_layer(
                    conv_cfg,
                    inplanes,
                    planes,
                    kernel,
                    stride=stride,
                    padding=kernel // 2,
                    bias=False),
                build_norm_layer(norm_cfg, planes)[1], nn.ReLU(inplace=True))

        self.base_layer = conv_level(in_channels, channels[0], 7, 1)
        self.level0 = conv_level(channels[0], channels[0], 3, 1)
        self.level1 = conv_level(channels[0], channels[1], 3, 2)
        for i in range(2, 6):
            self.add_module(
                f'level{i}',
                DLATree(
                    levels=levels[i],
                    in_channels=channels[i - 1],
                    out_channels=channels[i],
                    stride=2,
                    level_root=i > 2,
                    root_dim=0,
                    block=self.block,
                    block_cfg=dict(
                        self.block_cfg(), with_cp=with_cp,
                        init_cfg=block_init),
                    conv_cfg=conv_cfg,
                    norm_cfg=norm_cfg))

    def block_cfg(self) -> dict:
        """What every block gets besides channels, stride, ``with_cp``, its
        ``init_cfg`` and the layer configs."""
        return {}

    def block_widths(self, depth: int) -> List[int]:
        """Channels of the norm layers inside the blocks, level by level:
        the bottleneck channels, half a level's output channels."""
        return [c // 2 for c in self.arch_settings[depth][1][2:]]

    def _validate(self, *, depth, out_indices, frozen_stages,
                  norm_cfg) -> None:
        """Reject settings that would fail later or build the wrong net."""
        _check_choice('depth', depth, sorted(self.arch_settings))
        if (not out_indices or len(set(out_indices)) != len(out_indices)
                or not all(
                    isinstance(i, int) and 0 <= i <= 5 for i in out_indices)):
            raise ConfigValueError(
                f'out_indices={tuple(out_indices or ())!r} must be distinct '
                'level indices in 0..5, e.g. (2, 3, 4, 5) for strides 4-32')
        if not isinstance(frozen_stages, int) or not -1 <= frozen_stages <= 5:
            raise ConfigValueError(
                f'frozen_stages={frozen_stages!r} must be in -1..5 (-1 '
                'freezes nothing, k freezes base_layer and level0..levelk)')
        if norm_cfg.get('type') == 'GN':
            num_groups = norm_cfg.get('num_groups')
            sizes = sorted(
                set(self.arch_settings[depth][1])
                | set(self.block_widths(depth)))
            bad = [c for c in sizes if not num_groups or c % num_groups]
            if bad:
                raise ConfigValueError(
                    f'norm_cfg GN num_groups={num_groups!r} must divide every'
                    f' norm layer\'s channels, but not {bad[0]}; pick a '
                    f'divisor of all of {sizes}')

    def unused_keys(self) -> List[str]:
        """State-dict keys of the official code's never-used projections
        (absent from timm's checkpoints)."""
        keys = []
        for name, module in self.named_modules():
            if isinstance(module,
                          DLATree) and module.levels > 1 and (module.project
                                                              is not None):
                keys += [
                    f'{name}.project.{k}' for k in module.project.state_dict()
                ]
        return keys

    def forward(self, x: Tensor) -> Tuple[Tensor, ...]:
        """The outputs of the levels in ``out_indices``; CPU inference in
        channels-last with ``cpu_channels_last``."""
        return forward_channels_last_on_cpu(
            self._forward_levels, x, enabled=self.cpu_channels_last)

    def _forward_levels(self, x: Tensor) -> Tuple[Tensor, ...]:
        x = self.base_layer(x)
        outs = []
        for i in range(6):
            x = getattr(self, f'level{i}')(x)
            if i in self.out_indices:
                outs.append(x)
        return tuple(outs)

    def _freeze_stages(self) -> None:
        if self.frozen_stages < 0:
            return
        names = ['base_layer'
                 ] + [f'level{i}' for i in range(self.frozen_stages + 1)]
        for name in names:
            module = getattr(self, name)
            module.eval()
            for param in module.parameters():
                param.requires_grad = False

    def train(self, mode: bool = True) -> 'DLA':
        """Set the mode, keeping frozen levels and ``norm_eval`` BNs in
        eval."""
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for module in self.modules():
                if isinstance(module, _BatchNorm):
                    module.eval()
        return self


@MODELS.register_module()
class Res2NetDLA(DLA):
    """Res2Net-DLA / Res2NeXt-DLA backbone (Gao et al., TPAMI 2021): DLA-60
    with the Res2Net block (:class:`DLABottle2neck`); all else is
    :class:`DLA`'s.

    Args:
        scales: Number of splits per block, at least 2.
        base_width: Channels per split (per group) at 64 bottleneck
            channels: 28 for Res2Net-DLA-60, 4 for Res2NeXt-DLA-60.
        groups: Cardinality of the split convs: 1, or 8 for Res2NeXt-DLA.
        depth: DLA depth; 60 (the published Res2Net-DLA networks).
        **kwargs: The other arguments of :class:`DLA`: ``in_channels``,
            ``out_indices``, ``frozen_stages``, ``conv_cfg``, ``norm_cfg``,
            ``norm_eval``, ``with_cp``, ``zero_init_residual``,
            ``cpu_channels_last``, ``init_cfg``.
    """
    block = DLABottle2neck

    def __init__(self,
                 *,
                 scales: int = 4,
                 base_width: float = 28,
                 groups: int = 1,
                 depth: int = 60,
                 **kwargs) -> None:
        # Read by _validate() and block_cfg(), which DLA.__init__ calls.
        self.scales, self.base_width, self.groups = scales, base_width, groups
        super().__init__(depth=depth, **kwargs)

    def block_cfg(self) -> dict:
        return dict(
            scales=self.scales, base_width=self.base_width, groups=self.groups)

    def block_widths(self, depth: int) -> List[int]:
        """None to check: the norms inside a Res2Net block are over its
        splits, and adapt GN's groups to them
        (:func:`~.backbone.split_norm_cfg`)."""
        return []

    def _split_widths(self, depth: int) -> List[int]:
        return [
            split_width(c // 2, self.base_width, _BASE_CHANNELS, self.groups)
            for c in self.arch_settings[depth][1][2:]
        ]

    def _validate(self, *, depth, **kwargs) -> None:
        """DLA's checks (``depth`` among them, which the split widths
        below need), then the Res2Net block's."""
        super()._validate(depth=depth, **kwargs)
        check_int(
            'scales',
            self.scales,
            minimum=2,
            hint='4 for the published Res2Net-DLA networks; DLA is the '
            'plain network')
        check_int(
            'groups',
            self.groups,
            minimum=1,
            hint='1 for Res2Net-DLA, 8 for Res2NeXt-DLA')
        widths = self._split_widths(depth)
        if self.base_width <= 0 or min(widths) < 1:
            raise ConfigValueError(
                f'base_width={self.base_width!r} gives {min(widths)} '
                'channels per split; use base_width >= 1 (28 for '
                'Res2Net-DLA, 4 with groups=8 for Res2NeXt-DLA)')
