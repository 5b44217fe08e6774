# Copyright (c) Res2Net-MMDet contributors. All rights reserved.
"""mmcv's deformable convs in a form ``torch.export`` captures, in fp32.

mmcv's ``DeformConv2dPack`` (the configs' ``DCN``) and
``ModulatedDeformConv2dPack`` (``DCNv2``) call compiled C++ through an
autograd function, which ``torch.export`` cannot trace. Here each is a
torch custom op (``torch.ops.res2net.deform_conv2d`` and
``modulated_deform_conv2d``) that calls mmcv's kernel in fp32, with a shape
function for tracing; :func:`exportable` returns a copy of a module with
each deformable conv computing through them. The quantizer does not know
these ops, so they stay fp32 between the int8 convs (their offset convs
too: :func:`exportable` names the modules for the quantizer to skip), and
an exported program that holds them loads wherever this module is
imported.
"""
from copy import deepcopy
from typing import List, Tuple

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm


def _out_size(size, kernel: int, stride: int, padding: int, dilation: int):
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def _fake(x: Tensor, weight: Tensor, stride: List[int], padding: List[int],
          dilation: List[int]) -> Tensor:
    n, _, height, width = x.shape
    kh, kw = weight.shape[2:]
    return x.new_empty(
        n, weight.shape[0],
        _out_size(height, kh, stride[0], padding[0], dilation[0]),
        _out_size(width, kw, stride[1], padding[1], dilation[1]))


@torch.library.custom_op('res2net::deform_conv2d', mutates_args=())
def deform_conv2d(x: Tensor, offset: Tensor, weight: Tensor, stride: List[int],
                  padding: List[int], dilation: List[int], groups: int,
                  deform_groups: int, im2col_step: int) -> Tensor:
    """mmcv's ``deform_conv2d`` in fp32, NCHW (its kernels' layout and
    type), the result in ``x``'s type."""
    from mmcv.ops import deform_conv2d as mmcv_deform_conv2d
    out = mmcv_deform_conv2d(x.float().contiguous(),
                             offset.float().contiguous(),
                             weight.float().contiguous(), tuple(stride),
                             tuple(padding), tuple(dilation), groups,
                             deform_groups, False, im2col_step)
    return out.to(x.dtype)


@deform_conv2d.register_fake
def _(x, offset, weight, stride, padding, dilation, groups, deform_groups,
      im2col_step):
    return _fake(x, weight, stride, padding, dilation)


@torch.library.custom_op('res2net::modulated_deform_conv2d', mutates_args=())
def modulated_deform_conv2d(x: Tensor, offset: Tensor, mask: Tensor,
                            weight: Tensor, bias: Tensor, stride: List[int],
                            padding: List[int], dilation: List[int],
                            groups: int, deform_groups: int) -> Tensor:
    """mmcv's ``modulated_deform_conv2d`` in fp32, NCHW, the result in
    ``x``'s type (``bias`` empty for none)."""
    from mmcv.ops import modulated_deform_conv2d as mmcv_modulated
    out = mmcv_modulated(x.float().contiguous(),
                         offset.float().contiguous(),
                         mask.float().contiguous(),
                         weight.float().contiguous(),
                         bias.float() if bias.numel() else None, tuple(stride),
                         tuple(padding), tuple(dilation), groups,
                         deform_groups)
    return out.to(x.dtype)


@modulated_deform_conv2d.register_fake
def _(x, offset, mask, weight, bias, stride, padding, dilation, groups,
      deform_groups):
    return _fake(x, weight, stride, padding, dilation)


class ExportableDeformConv(nn.Module):
    """One of mmcv's deformable convs (its weights, its offset conv)
    computing through the custom ops above, and the eval-mode BN after it
    once :meth:`fold` has folded it in.

    Args:
        dcn: A ``DeformConv2dPack`` or ``ModulatedDeformConv2dPack``.
    """

    def __init__(self, dcn: nn.Module) -> None:
        super().__init__()
        self.modulated = type(dcn).__name__ == 'ModulatedDeformConv2dPack'
        self.conv_offset = dcn.conv_offset
        self.weight = dcn.weight
        self.bias = getattr(dcn, 'bias', None)
        self.args = (list(dcn.stride), list(dcn.padding), list(dcn.dilation),
                     dcn.groups, dcn.deform_groups)
        self.im2col_step = getattr(dcn, 'im2col_step', 32)

    @torch.no_grad()
    def fold(self, bn: _BatchNorm) -> None:
        """Fold the eval-mode ``bn`` that follows into the weights (and a
        bias, added after the op where mmcv's conv takes none)."""
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        bias = self.bias if self.bias is not None else torch.zeros_like(
            bn.running_mean)
        self.weight = nn.Parameter(self.weight * scale.view(-1, 1, 1, 1))
        self.bias = nn.Parameter((bias - bn.running_mean) * scale + bn.bias)

    def forward(self, x: Tensor) -> Tensor:
        offset = self.conv_offset(x)
        if self.modulated:
            o1, o2, mask = torch.chunk(offset, 3, dim=1)
            bias = self.bias if self.bias is not None else x.new_empty(0)
            return torch.ops.res2net.modulated_deform_conv2d(
                x, torch.cat((o1, o2), dim=1), torch.sigmoid(mask),
                self.weight, bias, *self.args)
        out = torch.ops.res2net.deform_conv2d(x, offset, self.weight,
                                              *self.args, self.im2col_step)
        return out if self.bias is None else out + self.bias.view(1, -1, 1, 1)


# mmcv's deformable convs that :func:`exportable` replaces, by class name.
DEFORM_CONVS = ('DeformConv2dPack', 'ModulatedDeformConv2dPack')


def is_deform_conv(module: nn.Module) -> bool:
    """Whether ``module`` is one of the deformable convs of
    :data:`DEFORM_CONVS`."""
    return type(module).__module__.startswith('mmcv.ops') and type(
        module).__name__ in DEFORM_CONVS


def exportable(model: nn.Module) -> Tuple[nn.Module, List[str]]:
    """A copy of ``model`` with each deformable conv computing through the
    custom ops, and the names of the replaced modules (in the copy: the
    :class:`ExportableDeformConv` modules, whose offset convs stay fp32).

    In a Res2Net block (``bns[i](convs[i](x))``, as ``deploy.py`` folds
    them) the eval-mode BN after a deformable split conv is folded into it:
    a BN left in the graph costs the quantizer's conv-BN pass a minute.

    ``model`` itself is unchanged (the copy shares nothing with it); one
    without deformable convs is returned as it is.
    """
    names = [
        name for name, module in model.named_modules()
        if is_deform_conv(module)
    ]
    if not names:
        return model, names
    model = deepcopy(model)
    for name in names:
        parent, _, child = name.rpartition('.')
        owner = model.get_submodule(parent) if parent else model
        setattr(owner, child, ExportableDeformConv(getattr(owner, child)))
    for module in model.modules():
        convs, bns = getattr(module, 'convs',
                             None), getattr(module, 'bns', None)
        if not (isinstance(convs, nn.ModuleList)
                and isinstance(bns, nn.ModuleList)):
            continue
        for i, (conv, bn) in enumerate(zip(convs, bns)):
            if isinstance(conv, ExportableDeformConv) and isinstance(
                    bn, _BatchNorm) and not bn.training:
                conv.fold(bn)
                bns[i] = nn.Identity()
    return model, names
