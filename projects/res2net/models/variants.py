# Copyright (c) Res2Net-MMDet contributors. All rights reserved.
"""The published Res2Net family by name: one table of backbone settings.

Every network the paper or the official repositories published maps to
:class:`~projects.res2net.Res2NetBackbone` keyword arguments here, so the
size table, the weight converters, the configs and the tests name variants
the same way. The official ImageNet models pool the passed-through split in
every stage block (``first_block_pool='always'``); weights converted from
them need that rule to reproduce the published network exactly.

The Res2Net-DLA networks (the official ``dla.py``) are in the same table,
as :class:`~projects.res2net.models.dla.Res2NetDLA` arguments:
:func:`backbone_type` says which class a name builds and
:func:`build_variant` builds it.
"""
from typing import Dict, NamedTuple, Optional, Tuple

import torch
from mmengine.analysis import FlopAnalyzer
from torch import Tensor, nn

from ..errors import ConfigValueError
from .checkpoint import no_random_init

# Res2Net v1 (res2net.py): 7x7 stem, strided 1x1 conv downsample.
_V1 = dict(stem_type='basic', avg_down=False, first_block_pool='always')
# Res2Net v1b (res2net_v1b.py; "v1d" in mmdet): deep stem, avg-pool
# downsample.
_V1B = dict(stem_type='deep', avg_down=True, first_block_pool='always')

RESNET_VARIANTS: Dict[str, dict] = {
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

# Res2Net-DLA (dla.py): floor(planes * 28 / 128) channels per split;
# Res2NeXt-DLA: planes * 8 // 32 channels in 8 groups.
DLA_VARIANTS: Dict[str, dict] = {
    'res2net_dla60': dict(depth=60, scales=4, base_width=28),
    'res2next_dla60': dict(depth=60, scales=4, base_width=4, groups=8),
}

# Every named network: ``Res2NetBackbone`` ones first, then the DLA ones.
VARIANTS: Dict[str, dict] = {**RESNET_VARIANTS, **DLA_VARIANTS}


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
    # The paper's DLA rows; mmengine counts 4.147 G and 3.485 G MACs on the
    # official code (its counter traces, so the official code's unused
    # projections are not counted).
    'res2net_dla60': PublishedSize(21.15, 4.2, 21.53),
    'res2next_dla60': PublishedSize(17.33, 3.6, 21.55),
}

# ImageNet weights that mmengine can download by name (mmdet's conversion of
# the official file); every other variant reads its converted file from
# checkpoints/<variant>.pth (tools/model_converters/res2net_to_backbone.py).
MMDET_IMAGENET_WEIGHTS = {
    'res2net101_v1b_26w_4s': 'open-mmlab://res2net101_v1d_26w_4s',
}


def imagenet_weights(name: str) -> str:
    """Where a config reads the ImageNet weights of a named variant: mmdet's
    download name where one exists, else ``checkpoints/<name>.pth``."""
    variant_kwargs(name)
    return MMDET_IMAGENET_WEIGHTS.get(name, f'checkpoints/{name}.pth')


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


def backbone_type(name: str) -> str:
    """The registered backbone class of a named variant.

    Raises:
        ConfigValueError: The name is not a known variant.
    """
    variant_kwargs(name)
    return 'Res2NetDLA' if name in DLA_VARIANTS else 'Res2NetBackbone'


def build_variant(name: str, **overrides) -> nn.Module:
    """The backbone of a named variant; ``overrides`` are further backbone
    arguments (e.g. ``out_indices``, ``init_cfg``)."""
    kwargs = {**variant_kwargs(name), **overrides}
    if backbone_type(name) == 'Res2NetDLA':
        from .dla import Res2NetDLA
        return Res2NetDLA(**kwargs)
    from .backbone import Res2NetBackbone
    return Res2NetBackbone(**kwargs)


class ImageNetClassifier(nn.Module):
    """A backbone with the 1000-class head that the published sizes count.

    For DLA the official head is a global average pool (``AvgPool2d(7)`` at
    224x224) and a 1x1 conv with bias, 1024 -> 1000: the same parameters
    and multiply-adds as this pool and linear layer.

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
    as one operation: its :class:`FlopAnalyzer`, the FLOP half of
    ``get_model_complexity_info`` (which traces the model a second time, for
    activations).
    """
    last = 5 if backbone_type(name) == 'Res2NetDLA' else 3
    # Sizes do not depend on the values: none drawn, all zero (whatever
    # memory the parameters got could hold slow denormals).
    with no_random_init():
        backbone = build_variant(name, out_indices=(last, ))
        model = ImageNetClassifier(backbone).eval()
    for param in model.parameters():
        param.detach().zero_()
    params = sum(p.numel() for p in model.parameters())
    analyzer = FlopAnalyzer(model,
                            (torch.randn(1, 3, image_size, image_size), ))
    return params / 1e6, analyzer.total() / 1e9
