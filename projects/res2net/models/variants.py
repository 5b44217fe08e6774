# Copyright (c) Res2Net-MMDet contributors. All rights reserved.
"""The published Res2Net family by name: one table of backbone settings.

Every network the paper or the official repositories published maps to
:class:`~projects.res2net.Res2NetBackbone` keyword arguments here, so the
size table, the weight converters, the configs and the tests name variants
the same way. The official ImageNet models pool the passed-through split in
every stage block (``first_block_pool='always'``); weights converted from
them need that rule to reproduce the published network exactly.
"""
from typing import Dict, NamedTuple, Optional, Tuple

import torch
from mmengine.analysis import get_model_complexity_info
from torch import Tensor, nn

from ..errors import ConfigValueError

# Res2Net v1 (res2net.py): 7x7 stem, strided 1x1 conv downsample.
_V1 = dict(stem_type='basic', avg_down=False, first_block_pool='always')
# Res2Net v1b (res2net_v1b.py; "v1d" in mmdet): deep stem, avg-pool
# downsample.
_V1B = dict(stem_type='deep', avg_down=True, first_block_pool='always')

VARIANTS: Dict[str, dict] = {
    'res2net50_26w_4s':
    dict(depth=50, scales=4, base_width=26, **_V1),
    'res2net50_48w_2s':
    dict(depth=50, scales=2, base_width=48, **_V1),
    'res2net50_14w_8s':
    dict(depth=50, scales=8, base_width=14, **_V1),
    'res2net50_26w_6s':
    dict(depth=50, scales=6, base_width=26, **_V1),
    'res2net50_26w_8s':
    dict(depth=50, scales=8, base_width=26, **_V1),
    'res2net101_26w_4s':
    dict(depth=101, scales=4, base_width=26, **_V1),
    # Res2NeXt-50: cardinality 8, 4 channels per group and split.
    'res2next50':
    dict(depth=50, scales=4, base_width=4, groups=8, **_V1),
    'res2net50_v1b_26w_4s':
    dict(depth=50, scales=4, base_width=26, **_V1B),
    'res2net101_v1b_26w_4s':
    dict(depth=101, scales=4, base_width=26, **_V1B),
    'res2net152_v1b_26w_4s':
    dict(depth=152, scales=4, base_width=26, **_V1B),
    'res2net200_v1b_26w_4s':
    dict(depth=200, scales=4, base_width=26, **_V1B),
    # SE-Res2Net (paper section 3.2): an SE block before the residual add.
    'se_res2net50_26w_4s':
    dict(depth=50, scales=4, base_width=26, se_ratio=16, **_V1),
    'se_res2net50_v1b_26w_4s':
    dict(depth=50, scales=4, base_width=26, se_ratio=16, **_V1B),
}


class PublishedSize(NamedTuple):
    """Sizes from the paper / official repository (1000-class head)."""
    params_m: float
    macs_g: float
    top1_error: Optional[float] = None


PUBLISHED: Dict[str, PublishedSize] = {
    'res2net50_26w_4s': PublishedSize(25.70, 4.2, 22.01),
    'res2net50_48w_2s': PublishedSize(25.29, 4.2),
    'res2net50_14w_8s': PublishedSize(25.06, 4.2),
    'res2net50_26w_6s': PublishedSize(37.05, 6.3),
    'res2net50_26w_8s': PublishedSize(48.40, 8.3),
    'res2net101_26w_4s': PublishedSize(45.21, 8.1, 20.81),
    'res2next50': PublishedSize(24.67, 4.2),
    'res2net50_v1b_26w_4s': PublishedSize(25.72, 4.5, 19.73),
    'res2net101_v1b_26w_4s': PublishedSize(45.23, 8.3, 18.77),
}


def variant_kwargs(name: str) -> dict:
    """The backbone arguments of a named variant.

    Raises:
        ConfigValueError: The name is not a known variant.
    """
    if name not in VARIANTS:
        raise ConfigValueError(
            f'unknown Res2Net variant {name!r}; choose one of '
            f'{", ".join(VARIANTS)}')
    return dict(VARIANTS[name])


class ImageNetClassifier(nn.Module):
    """A backbone with the 1000-class head that the published sizes count.

    Args:
        backbone: The backbone; its last output feeds the head.
        num_classes: Classes of the linear head.
    """

    def __init__(self, backbone: nn.Module, num_classes: int = 1000) -> None:
        super().__init__()
        self.backbone = backbone
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(backbone.feat_dim, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(torch.flatten(self.pool(self.backbone(x)[-1]), 1))


def measure_size(name: str, image_size: int = 224) -> Tuple[float, float]:
    """Params (M, head included) and MACs (G) of a named variant.

    MACs come from mmengine's complexity counter, which counts a multiply-add
    as one operation.
    """
    from .backbone import Res2NetBackbone
    backbone = Res2NetBackbone(**variant_kwargs(name), out_indices=(3, ))
    model = ImageNetClassifier(backbone).eval()
    params = sum(p.numel() for p in model.parameters())
    info = get_model_complexity_info(
        model,
        input_shape=(3, image_size, image_size),
        show_table=False,
        show_arch=False)
    return params / 1e6, info['flops'] / 1e9
