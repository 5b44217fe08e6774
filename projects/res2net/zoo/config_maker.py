# Copyright (c) Res2Net-MMDet contributors. All rights reserved.
"""Res2Net in any mmdet detector: the config of a detector with its ResNet
swapped for a published Res2Net variant.

A Res2Net of the ``Res2NetBackbone`` family has ResNet-50's output channels
(256, 512, 1024, 2048) at ResNet's strides, so it takes the place of the
ResNet-50/101 (or ResNeXt) backbone of any mmdet detector. What the detector
set on its ResNet stays (which outputs, what is frozen, the norm layers,
DCN, strides and dilations: :data:`KEPT`); what makes the network and its
ImageNet weights comes from the variant (:data:`FROM_THE_VARIANT`). Two
things follow the weights rather than the base: a caffe-style base
(detectron2's BGR weights, stride in the 1x1 conv, std 1) becomes
pytorch-style with ImageNet's RGB normalisation, as the Res2Net weights
were trained; and the weights themselves are mmdet's download where mmdet
names one, else the locally converted file ``checkpoints/<variant>.pth``.

:func:`swap_backbone` does it to a loaded config (the compatibility table
uses it in memory); :func:`make_config` writes it as a leaf config of a few
lines on the base, checked by building the model before it is written.
Where ``configs/_base_/res2net_backbones.py`` defines the variant's backbone
(under the variant's name: :func:`base_backbone`), the written config starts
from it, ``dict(_base_.<variant>, _delete_=True, <kept settings>)``, instead
of spelling the network out.
"""
import contextlib
import os
import os.path as osp
import tempfile
import textwrap
from typing import Any, Dict, List, Mapping, NamedTuple, Optional, Tuple

from mmengine.config import Config
from yapf.yapflib.yapf_api import FormatCode

from ..engine.fileio import write_text
from ..errors import UserError, error_line
from ..models.variants import (DLA_VARIANTS, RESNET_VARIANTS, imagenet_weights,
                               variant_kwargs)
from ..paths import REPO_ROOT

# mmdet backbones a Res2NetBackbone replaces: ResNet's bottleneck networks
# (ResNet-50 and deeper; ResNetV1d is ResNet with a deep stem and avg-pool
# downsampling; ResNeXt has the same channels).
RESNET_TYPES = ('ResNet', 'ResNetV1d', 'ResNeXt')
# Backbones that already are Res2Net (mmdet's, and this project's).
RES2NET_TYPES = ('Res2Net', 'Res2NetBackbone')
# What a detector sets on its ResNet that the Res2Net keeps.
KEPT = ('in_channels', 'num_stages', 'strides', 'dilations', 'out_indices',
        'style', 'frozen_stages', 'conv_cfg', 'norm_cfg', 'norm_eval', 'dcn',
        'stage_with_dcn', 'plugins', 'with_cp', 'zero_init_residual')
# What the variant decides: the network and its weights.
FROM_THE_VARIANT = ('type', 'depth', 'deep_stem', 'avg_down', 'stem_channels',
                    'base_channels', 'groups', 'base_width', 'init_cfg',
                    'pretrained')
# ResNet depths with BasicBlocks: 64-512 channels, not Res2Net's.
_BASIC_BLOCK_DEPTHS = (18, 34)
# ImageNet's RGB normalisation, which the Res2Net weights were trained with
# (mmdet's pytorch-style configs use the same).
PYTORCH_NORMALISATION = dict(
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    bgr_to_rgb=True)
BACKBONES_BASE = REPO_ROOT / 'configs' / '_base_' / 'res2net_backbones.py'
TOOL = 'tools/misc/res2net_config.py'


class Swap(NamedTuple):
    """A ResNet backbone config and the Res2Net one that replaces it.

    Attributes:
        path: Where the backbone is, e.g. ``('model', 'backbone')``.
        resnet: The base's backbone config.
        res2net: The new backbone config (with ``_delete_`` not set).
        kept: The base's settings it keeps, by name.
        notes: What else changed and why (a caffe-style base).
        data_preprocessor: Normalisation to set on the detector's data
            preprocessor, or None to keep the base's.
        preprocessor_path: Where that preprocessor is: the model's, or the
            one a semi-supervised model's ``MultiBranchDataPreprocessor``
            wraps.
        settings: ``custom_imports`` and ``custom_hooks`` as the config
            reads them: the base's and the project's backbone base's.
        own_settings: The base defines one of those itself, so the written
            config sets both (mmengine allows no key in two bases) instead
            of inheriting the project's backbone base.
        evaluators: The base's evaluators that are mmdet's ``CocoMetric``,
            which the written config makes :data:`FASTER_METRIC` (the same
            AP, faster; the base's settings kept).
    """

    path: Tuple[str, ...]
    resnet: dict
    res2net: dict
    kept: Tuple[str, ...]
    notes: Tuple[str, ...]
    data_preprocessor: Optional[dict]
    preprocessor_path: Tuple[str, ...] = ('model', 'data_preprocessor')
    settings: Dict[str, Any] = {}
    own_settings: bool = False
    evaluators: Tuple[str, ...] = ()


# What the project's backbone base adds to a run besides the backbones.
RUN_SETTINGS = ('custom_imports', 'custom_hooks')
# mmdet's CocoMetric, evaluated by faster-coco-eval (projects/res2net/
# evaluation); set in each leaf config, since mmengine allows no key in two
# bases and mmdet's dataset bases define the evaluators.
FASTER_METRIC = 'FasterCocoMetric'
EVALUATORS = ('val_evaluator', 'test_evaluator')


def coco_evaluators(cfg: Mapping) -> Tuple[str, ...]:
    """The evaluators of ``cfg`` that are one mmdet ``CocoMetric``."""
    return tuple(
        key for key in EVALUATORS if isinstance(cfg.get(key), Mapping)
        and cfg[key].get('type') == 'CocoMetric')


def run_settings(cfg: Config) -> Tuple[Dict[str, Any], bool]:
    """``custom_imports`` and ``custom_hooks`` of ``cfg`` with the project's
    added (``configs/_base_/res2net_backbones.py``), and whether ``cfg``
    defines either itself."""
    project = Config.fromfile(str(BACKBONES_BASE))
    imports = list(cfg.get('custom_imports', {}).get('imports', []))
    imports += [i for i in project.custom_imports.imports if i not in imports]
    hooks = [_plain(h) for h in cfg.get('custom_hooks', [])]
    hooks += [
        _plain(h) for h in project.custom_hooks
        if h.get('type') not in {k.get('type')
                                 for k in hooks}
    ]
    settings = dict(
        custom_imports=dict(imports=imports, allow_failed_imports=False),
        custom_hooks=hooks)
    return settings, any(key in cfg for key in RUN_SETTINGS)


class NothingToDo(UserError):
    """The base's backbone already is a Res2Net: nothing to swap."""


def check_variant(variant: str) -> None:
    """Raise one line unless ``variant`` is a ResNet-shaped Res2Net.

    Raises:
        UserError: An unknown variant, or a Res2Net-DLA one (other
            channels).
    """
    if variant in DLA_VARIANTS:
        raise UserError(
            f'{variant} is a Res2NetDLA, with 128-1024 channels where a '
            'ResNet has 256-2048: it does not fit a ResNet detector\'s neck; '
            'pick one of ' + ', '.join(RESNET_VARIANTS) +
            ' (or see configs/faster_rcnn_r2_dla60_fpn_1x.py)')
    if variant not in RESNET_VARIANTS:
        raise UserError(
            f'unknown Res2Net variant {variant!r}; choose one of ' +
            ', '.join(RESNET_VARIANTS))


def backbone_path(model: Mapping) -> Tuple[str, ...]:
    """Where the model's backbone config is: ``('model', 'backbone')``, or
    one level down (a tracker's ``model.detector.backbone``).

    Raises:
        UserError: No backbone, or more than one.
    """
    if 'backbone' in model:
        return ('model', 'backbone')
    found = [('model', key, 'backbone') for key, value in model.items()
             if isinstance(value, Mapping) and 'backbone' in value]
    if len(found) != 1:
        what = 'no model.backbone' if not found else 'backbones at ' + \
            ', '.join('.'.join(p) for p in found)
        raise UserError(f'the base has {what}: there is no one ResNet '
                        'backbone to replace')
    return found[0]


def config_node(cfg: Mapping, path: Tuple[str, ...]) -> Any:
    """The node of ``cfg`` at ``path`` (e.g. ``backbone_path``'s)."""
    node = cfg
    for key in path:
        node = node[key]
    return node


def _plain(node: Mapping) -> dict:
    """A config node as plain dicts, lists and tuples."""
    return node.to_dict() if hasattr(node, 'to_dict') else dict(node)


def _type_name(backbone: Mapping) -> str:
    """The name of a config's ``type``: a class's name, or a string's last
    dotted part (a registry scope, ``mmdet.ResNet``; or the module path
    that a lazy-import config's type reads as, ``mmdet.models.ResNet``)."""
    kind = backbone.get('type')
    name = kind if isinstance(kind, str) else getattr(kind, '__name__',
                                                      str(kind))
    return name.rsplit('.', 1)[-1]


def variant_backbone(variant: str) -> dict:
    """The backbone config of a named variant with its ImageNet weights:
    what the variant decides (:data:`FROM_THE_VARIANT`), nothing of a
    detector's."""
    return dict(
        type='Res2NetBackbone',
        **variant_kwargs(variant),
        init_cfg=dict(type='Pretrained', checkpoint=imagenet_weights(variant)))


def base_backbone(variant: str) -> Optional[str]:
    """The name under which ``configs/_base_/res2net_backbones.py``
    defines :func:`variant_backbone` of ``variant``: the variant's own name,
    or None where the base does not define it (a written config then spells
    the network out).

    The base defines the variants of the committed configs only, not a
    second copy of the variants table.

    Raises:
        RuntimeError: The base's entry of that name is another network.
    """
    entry = Config.fromfile(str(BACKBONES_BASE)).get(variant)
    if entry is None:
        return None
    if _plain(entry) != variant_backbone(variant):
        raise RuntimeError(
            f'{BACKBONES_BASE}: {variant} is {_plain(entry)}, not the variant '
            f'of projects/res2net/models/variants.py: '
            f'{variant_backbone(variant)}')
    return variant


def res2net_for(resnet: Mapping,
                variant: str,
                where: str = 'model.backbone') -> Swap:
    """The Res2Net backbone config that replaces ``resnet``.

    Args:
        resnet: The base's backbone config.
        variant: A name of :data:`RESNET_VARIANTS`.
        where: Where the backbone is, for messages.

    Raises:
        NothingToDo: ``resnet`` already is a Res2Net.
        UserError: Not a ResNet this can replace, or a setting with no
            Res2Net counterpart.
    """
    check_variant(variant)
    kind = _type_name(resnet)
    if kind in RES2NET_TYPES:
        raise NothingToDo(f'{where} already is {kind}: nothing to swap')
    if kind not in RESNET_TYPES:
        raise UserError(
            f'{where} is {kind}, not a ResNet: Res2Net replaces ResNet-50 '
            'and deeper (256-2048 channels at strides 4-32), whose stages '
            f'{kind} does not have')
    depth = resnet.get('depth')
    if depth in _BASIC_BLOCK_DEPTHS:
        raise UserError(
            f'{where} is {kind}-{depth}, whose BasicBlocks give 64-512 '
            'channels; Res2Net has ResNet-50\'s 256-2048, which its neck '
            'does not take')
    unknown = sorted(set(resnet) - set(KEPT) - set(FROM_THE_VARIANT))
    if unknown:
        raise UserError(f'{where}.{unknown[0]} has no Res2Net counterpart '
                        f'(Res2NetBackbone keeps {", ".join(KEPT)})')
    kept = tuple(k for k in KEPT if k in resnet)
    res2net = dict(variant_backbone(variant), **{k: resnet[k] for k in kept})
    res2net['init_cfg'] = res2net.pop('init_cfg')  # last, for the reader
    notes, preprocessor = [], None
    if res2net.get('style') == 'caffe':
        res2net['style'] = 'pytorch'
        kept = tuple(k for k in kept if k != 'style')
        preprocessor = dict(PYTORCH_NORMALISATION)
        notes.append(
            'the base is caffe-style (BGR input, std 1, stride in the 1x1 '
            'conv) for its detectron2 weights; the Res2Net weights were '
            'trained pytorch-style on RGB with ImageNet\'s mean and std, so '
            'style and data_preprocessor follow them')
    return Swap(
        path=tuple(where.split('.')),
        resnet=dict(resnet),
        res2net=res2net,
        kept=kept,
        notes=tuple(notes),
        data_preprocessor=preprocessor)


def plan_swap(cfg: Config, variant: str) -> Swap:
    """What swapping the backbone of ``cfg`` for ``variant`` changes.

    Raises:
        NothingToDo, UserError: As :func:`res2net_for`.
    """
    if 'model' not in cfg:
        raise UserError('the base has no model to put a Res2Net in')
    path = backbone_path(cfg.model)
    swap = res2net_for(_plain(config_node(cfg, path)), variant, '.'.join(path))
    settings, own = run_settings(cfg)
    preprocessor = ('model', 'data_preprocessor')
    if 'data_preprocessor' in cfg.model.get('data_preprocessor', {}):
        preprocessor += ('data_preprocessor', )  # MultiBranch's wrapped one
    return swap._replace(
        settings=settings,
        own_settings=own,
        preprocessor_path=preprocessor,
        evaluators=coco_evaluators(cfg))


def swap_backbone(cfg: Config, variant: str) -> Config:
    """``cfg`` (in place, and returned) with its backbone swapped for
    ``variant`` and the project imported, as :func:`make_config`'s config
    reads.

    Raises:
        NothingToDo, UserError: As :func:`res2net_for`.
    """
    swap = plan_swap(cfg, variant)
    parent = config_node(cfg, swap.path[:-1])
    parent[swap.path[-1]] = swap.res2net
    if swap.data_preprocessor is not None:
        config_node(cfg, swap.preprocessor_path).update(swap.data_preprocessor)
    cfg.merge_from_dict(swap.settings)
    for key in swap.evaluators:
        cfg[key].type = FASTER_METRIC
    return cfg


def load_base(base: str) -> Config:
    """The config ``base`` names: ``mmdet::family/name.py`` or a file.

    Raises:
        UserError: It cannot be found or read.
    """
    if not base.startswith('mmdet::') and not osp.isfile(base):
        raise UserError(f'base config not found: {base}; pass a file or '
                        'mmdet::<family>/<name>.py')
    try:
        if base.startswith('mmdet::'):
            return Config.fromstring(f'_base_ = {base!r}\n', '.py')
        return Config.fromfile(base)
    except Exception as err:  # a missing mmdet config, a syntax error
        raise UserError(
            f'cannot read base config {base}: {error_line(err)}') from err


class _Source(str):
    """Config source that :func:`_py` writes as it is."""


def _py(value: Any) -> str:
    """``value`` as config source: ``dict(key=...)`` for dicts."""
    if isinstance(value, _Source):
        return str(value)
    if isinstance(value, Mapping):
        if all(isinstance(k, str) and k.isidentifier() for k in value):
            return 'dict(' + ', '.join(f'{k}={_py(v)}'
                                       for k, v in value.items()) + ')'
        return '{' + ', '.join(f'{k!r}: {_py(v)}'
                               for k, v in value.items()) + '}'
    if isinstance(value, tuple):
        inner = ', '.join(_py(v) for v in value)
        return f'({inner},)' if len(value) == 1 else f'({inner})'
    if isinstance(value, list):
        return '[' + ', '.join(_py(v) for v in value) + ']'
    return repr(value)


def config_text(base: str, variant: str, swap: Swap, *, out_dir: str) -> str:
    """The leaf config: the base and the project's backbone base, and the
    backbone (and, for a caffe-style base, the normalisation) replaced;
    formatted as the project's configs are (yapf, ``setup.cfg``)."""
    base_ref = base if base.startswith('mmdet::') else osp.relpath(
        osp.abspath(base), out_dir)
    project_base = osp.relpath(BACKBONES_BASE, out_dir)
    if not project_base.startswith('.'):
        project_base = './' + project_base
    # model = dict(..., backbone=dict(_delete_=True, ...)), at its path:
    # dict(_base_.<variant>, _delete_=True, <the rest>) where the project's
    # backbone base, inherited, defines the variant.
    name = None if swap.own_settings else base_backbone(variant)
    model: Any = dict(_delete_=True, **swap.res2net)
    if name is not None:
        entry = variant_backbone(variant)
        rest = [
            f'{k}={_py(v)}' for k, v in swap.res2net.items()
            if k not in entry or entry[k] != v
        ]
        model = _Source(
            f'dict({", ".join([f"_base_.{name}", "_delete_=True"] + rest)})')
    for key in reversed(swap.path[1:]):
        model = {key: model}
    if swap.data_preprocessor is not None:
        preprocessor: Dict[str, Any] = swap.data_preprocessor
        for key in reversed(swap.preprocessor_path[2:]):
            preprocessor = {key: preprocessor}
        model = dict(data_preprocessor=preprocessor, **model)
    resnet = f'{swap.resnet.get("type")}-{swap.resnet.get("depth")}'
    comments = [
        f'{base} with its {resnet} replaced by Res2Net {variant}, keeping '
        'the ResNet\'s ' +
        (', '.join(swap.kept) or 'nothing') + f'; written by {TOOL}.'
    ] + [f'Also: {note}.' for note in swap.notes] + [
        f'Its CocoMetric evaluators are {FASTER_METRIC}: the same AP, '
        'faster (docs/speed.md).'
    ][:bool(swap.evaluators)]
    if swap.own_settings:
        # The base defines custom_imports or custom_hooks: set both here.
        code = f'_base_ = {base_ref!r}\n' + ''.join(
            f'{key} = {_py(value)}\n' for key, value in swap.settings.items())
    else:
        code = f'_base_ = [{base_ref!r}, {project_base!r}]\n'
    code += f'model = {_py(model)}\n'
    code += ''.join(f'{key} = dict(type={FASTER_METRIC!r})\n'
                    for key in swap.evaluators)
    style = str(REPO_ROOT / 'setup.cfg')
    formatted, _ = FormatCode(
        code, style_config=style if osp.isfile(style) else 'pep8')
    header = [
        line for comment in comments for line in textwrap.wrap(
            comment,
            width=79,
            initial_indent='# ',
            subsequent_indent='# ',
            break_on_hyphens=False,
            break_long_words=False)
    ]
    return '\n'.join(header) + '\n' + formatted


class MadeConfig(NamedTuple):
    """What :func:`make_config` wrote."""

    path: str
    swap: Swap
    text: str


def default_out(base: str, variant: str) -> str:
    """``configs/<base name, its ResNet token replaced>.py``: e.g.
    ``dino-4scale_r50_8xb2-12e_coco`` with ``res2net101_v1b_26w_4s`` gives
    ``configs/dino-4scale_res2net101-v1b-26w-4s_8xb2-12e_coco.py``; a name
    without such a token gets the variant appended."""
    stem = osp.splitext(osp.basename(base.split('::')[-1]))[0]
    tag = variant.replace('_', '-')
    parts = stem.split('_')
    for i, part in enumerate(parts):
        head, *rest = part.split('-')
        if head in ('r50', 'r101', 'r152', 'x101'):
            # A caffe-style base becomes pytorch-style (see res2net_for).
            parts[i] = '-'.join([tag] + [r for r in rest if r != 'caffe'])
            break
    else:
        parts.append(tag)
    return str(REPO_ROOT / 'configs' / ('_'.join(parts) + '.py'))


def make_config(base: str,
                variant: str,
                out: Optional[str] = None) -> MadeConfig:
    """Write the Res2Net version of ``base`` as a leaf config.

    The config is written next to its destination first, read back and its
    model built (no weights are read); only then is it written in place,
    so that a config that does not build is never left behind, nor a
    folder made for it.

    Raises:
        NothingToDo: The base's backbone already is a Res2Net.
        UserError: The base cannot be read, or its backbone cannot be
            replaced (the line says why), or the result cannot be read
            back or does not build.
    """
    check_variant(variant)
    cfg = load_base(base)
    swap = plan_swap(cfg, variant)
    out = out or default_out(base, variant)
    out_dir = osp.dirname(osp.abspath(out))
    new_folders = _missing_folders(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    try:
        text = config_text(base, variant, swap, out_dir=out_dir)
        # Read back where it will be: its bases are relative to that folder.
        fd, tmp = tempfile.mkstemp(
            prefix='.res2net_config.', suffix='.py', dir=out_dir)
        try:
            with os.fdopen(fd, 'w', encoding='utf-8') as f:
                f.write(text)
            check_builds(_read_back(tmp, base), swap)
        finally:
            os.unlink(tmp)
        write_text(out, text)
    except BaseException:
        # The folders made for this config go too: nothing is left.
        for folder in new_folders:
            with contextlib.suppress(OSError):  # not empty: not only ours
                os.rmdir(folder)
        raise
    return MadeConfig(out, swap, text)


def _missing_folders(folder: str) -> List[str]:
    """The folders that ``os.makedirs(folder)`` would make, deepest
    first."""
    missing = []
    while not osp.isdir(folder) and osp.dirname(folder) != folder:
        missing.append(folder)
        folder = osp.dirname(folder)
    return missing


def _read_back(path: str, base: str) -> Config:
    """The written config as mmengine reads it.

    Raises:
        UserError: mmengine cannot read it, e.g. because a plain config
            cannot inherit ``base`` (a lazy-import one: mmengine's line
            says so).
    """
    try:
        return Config.fromfile(path)
    except Exception as err:
        raise UserError(f'the Res2Net config on {base} cannot be read back: '
                        f'{error_line(err)}') from err


def check_builds(cfg: Config, swap: Swap) -> None:
    """Build the detector of ``cfg`` (weights not read) and check that its
    backbone is the Res2Net of ``swap``.

    Raises:
        UserError: The model does not build.
    """
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules

    from .. import models  # noqa: F401  (registers Res2NetBackbone)
    register_all_modules()
    backbone = config_node(cfg, swap.path)
    if _plain(backbone) != swap.res2net:
        raise RuntimeError(f'the written config\'s backbone is {backbone}, '
                           f'not {swap.res2net}')
    try:
        MODELS.build(cfg.model)
    except Exception as err:
        raise UserError(
            f'the Res2Net config does not build: {error_line(err)}') from err
