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

Res2Net-DLA (official ``dla.py``; timm's ``dla60_res2net`` and
``dla60_res2next``): ``Res2NetDLA`` uses the official names unchanged
(``base_layer``, ``level0`` .. ``level5``, ``tree1``, ``tree2``,
``root.conv``, ``root.bn``, ``project.{0,1}``, the block keys above); only
the classifier ``fc.*`` (a 1x1 conv in both) is dropped. timm's
checkpoints lack the official code's unused projections of the deeper
trees (``level3.project``, ``level4.project``, ``level4.tree1.project``);
:func:`fill_unused_dla_keys` fills them in, since no output depends on
them. The reverse conversion writes the official key set.
"""
from typing import Dict, List, Mapping, NamedTuple, Sequence, Tuple

from torch import Tensor, nn

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


def fill_unused_dla_keys(state: Mapping[str, Tensor], backbone: nn.Module
                         ) -> Tuple[Dict[str, Tensor], List[str]]:
    """Add a DLA backbone's unused-projection entries missing in ``state``.

    timm leaves out the projections that the official trees build but
    never use; a strict load needs them, so they are taken from
    ``backbone`` (their values reach no output).

    Args:
        state: Converted backbone weights (e.g. from a timm checkpoint).
        backbone: A ``Res2NetDLA`` of the checkpoint's variant.

    Returns:
        The completed state dict and the keys that were filled in.
    """
    own = backbone.state_dict()
    filled = [k for k in backbone.unused_keys() if k not in state]
    return {**state, **{k: own[k] for k in filled}}, filled
