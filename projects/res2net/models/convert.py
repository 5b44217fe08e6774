# Copyright (c) Res2Net-MMDet contributors. All rights reserved.
"""Key maps between released Res2Net weights and ``Res2NetBackbone``.

The official code (``res2net.py``, ``res2net_v1b.py``, ``res2next.py``) and
timm's ``res2net*`` models share one naming; ours differs only where mmdet's
ResNet names things its own way:

=====================================  ====================================
official / timm                        Res2NetBackbone
=====================================  ====================================
``conv1.{0,1,3,4,6}`` + ``bn1``        ``stem.{0,1,3,4,6}`` + ``stem.7``
(deep stem, v1b)                       (v1's ``conv1``/``bn1`` are kept)
``layerX.Y.se.fc1`` / ``se.fc2``       ``layerX.Y.se.conv1.conv`` /
(timm's SE)                            ``se.conv2.conv`` (mmdet's SELayer)
``fc.*`` (ImageNet classifier)         dropped
=====================================  ====================================

Blocks (``conv1``, ``bn1``, ``convs.i``, ``bns.i``, ``conv3``, ``bn3``,
``downsample.*``) keep their names in every variant.
"""
from typing import Dict, List, Mapping, NamedTuple, Sequence, Tuple

from torch import Tensor

# (upstream, ours) name pieces. The stem pairs apply at the start of a key
# and only to a deep stem (v1's conv1/bn1 keep their names); the SE pairs
# apply inside block keys.
_DEEP_STEM = tuple((f'conv1.{i}.', f'stem.{i}.')
                   for i in (0, 1, 3, 4, 6)) + (('bn1.', 'stem.7.'), )
_SE = (('.se.fc1.', '.se.conv1.conv.'), ('.se.fc2.', '.se.conv2.conv.'))
CLASSIFIER_PREFIX = 'fc.'


class Conversion(NamedTuple):
    """A converted state dict and what happened to each source key."""
    state_dict: Dict[str, Tensor]
    renamed: List[Tuple[str, str]]
    dropped: List[str]


def _rename(key: str, stem: Sequence[Tuple[str, str]],
            infixes: Sequence[Tuple[str, str]]) -> str:
    for old, new in stem:
        if key.startswith(old):
            return new + key[len(old):]
    for old, new in infixes:
        key = key.replace(old, new)
    return key


def _convert(state: Mapping[str, Tensor], reverse: bool) -> Conversion:
    pairs = [(b, a) for a, b in _DEEP_STEM] if reverse else _DEEP_STEM
    infixes = [(b, a) for a, b in _SE] if reverse else _SE
    deep = any(k.startswith(pairs[0][0]) for k in state)
    out, renamed, dropped = {}, [], []
    for key, value in state.items():
        if not reverse and key.startswith(CLASSIFIER_PREFIX):
            dropped.append(key)
            continue
        new = _rename(key, pairs if deep else (), infixes)
        if new != key:
            renamed.append((key, new))
        out[new] = value
    return Conversion(out, renamed, dropped)


def to_backbone(state: Mapping[str, Tensor]) -> Conversion:
    """Official or timm key names -> ``Res2NetBackbone`` key names.

    The ImageNet classifier (``fc.*``) is dropped.
    """
    return _convert(state, reverse=False)


def from_backbone(state: Mapping[str, Tensor]) -> Conversion:
    """``Res2NetBackbone`` key names -> official/timm key names."""
    return _convert(state, reverse=True)
