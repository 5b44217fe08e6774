# Copyright (c) Res2Net-MMDet contributors. All rights reserved.
"""projects/res2net/models/deform_export.py: mmcv's deformable convs
through the custom ops compute what mmcv's modules do, and export.

Their int8 program is tested with the int8 fixture
(tests/projects/res2net/models/test_precision.py)."""
import pytest
import torch
from mmcv.ops import DeformConv2dPack, ModulatedDeformConv2dPack
from torch import nn

from projects.res2net.models.deform_export import (ExportableDeformConv,
                                                   exportable)


def _randomised(dcn: nn.Module) -> nn.Module:
    # mmcv starts the offsets at zero: a plain conv. Random offsets sample
    # between pixels, which is what the op is for.
    torch.manual_seed(0)
    with torch.no_grad():
        dcn.conv_offset.weight.normal_(0, 0.1)
    return dcn.eval()


@pytest.mark.parametrize('cls', [DeformConv2dPack, ModulatedDeformConv2dPack])
@pytest.mark.parametrize('stride', [1, 2])
def test_the_custom_op_computes_what_mmcv_does(cls, stride):
    dcn = _randomised(cls(8, 6, 3, stride=stride, padding=1))
    x = torch.randn(1, 8, 13, 11)
    with torch.no_grad():
        want = dcn(x)
        got = ExportableDeformConv(dcn)(x)
    assert got.shape == want.shape
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


class _Block(nn.Module):
    """A Res2Net block's split conv and its BN: ``bns[0](convs[0](x))``."""

    def __init__(self) -> None:
        super().__init__()
        self.convs = nn.ModuleList([DeformConv2dPack(8, 8, 3, padding=1)])
        self.bns = nn.ModuleList([nn.BatchNorm2d(8)])

    def forward(self, x):
        return self.bns[0](self.convs[0](x))


def test_exportable_folds_the_bn_and_exports_the_op():
    block = _Block()
    _randomised(block.convs[0])
    with torch.no_grad():
        block.bns[0].running_mean.normal_()
        block.bns[0].running_var.uniform_(0.5, 2)
        block.bns[0].weight.normal_()
        block.bns[0].bias.normal_()
    block.eval()
    x = torch.randn(1, 8, 96, 64)
    with torch.no_grad():
        want = block(x)
    copy, names = exportable(block)
    assert names == ['convs.0']
    assert isinstance(copy.bns[0], nn.Identity)
    assert isinstance(block.bns[0], nn.BatchNorm2d)  # the model is unchanged
    with torch.no_grad():
        torch.testing.assert_close(copy(x), want, rtol=1e-4, atol=1e-4)
    program = torch.export.export(copy, (x, ))
    targets = {node.target for node in program.graph.nodes}
    assert torch.ops.res2net.deform_conv2d.default in targets
    with torch.no_grad():
        torch.testing.assert_close(
            program.module()(x), want, rtol=1e-4, atol=1e-4)


def test_a_model_without_deformable_convs_is_returned_as_it_is():
    model = nn.Conv2d(3, 3, 1)
    assert exportable(model) == (model, [])
