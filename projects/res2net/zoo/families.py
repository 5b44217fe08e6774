# Copyright (c) Res2Net-MMDet contributors. All rights reserved.
"""Res2Net across mmdet's detector families: the compatibility table.

What ``tools/analysis_tools/check_mmdet_families.py`` computes. For every
config family mmdet ships in its package (``mmdet/.mim/configs/<family>``)
with a ResNet-50 config, one such config (:func:`family_configs`) is built
twice: as shipped (the *control*) and with its backbone swapped for
Res2Net-50 by :func:`~projects.res2net.zoo.config_maker.swap_backbone`,
exactly as ``tools/misc/res2net_config.py`` writes it. Each model then runs
one training forward (``mode='loss'``) and one test forward
(``mode='predict'``) on mmdet's own small test inputs
(``mmdet.testing.demo_mm_inputs``: two images of about 256x256, random
boxes, masks and semantic maps), initialised as for training from scratch
(nothing is downloaded). A family passes when both forwards run.

Each family runs in a process of its own with a time limit
(:func:`check_in_process`), so that a crash or a hang costs one row, not
the table; each is forked from one server process that imported torch and
mmdet once (5 s of a fresh process's start on a CPU). A failure is
reported with its exception's first line; the control's failures
(CUDA-only ops, a language model to download, a tracker that takes videos)
are outside the backbone, so the goal is that every family whose control
passes also passes with Res2Net.
"""
import os
import os.path as osp
import queue
import time
import traceback
from typing import Any, Dict, Iterator, List, NamedTuple, Optional, Sequence

import torch
from mmdet.registry import MODELS
from mmdet.testing import demo_mm_inputs, demo_mm_proposals
from mmdet.utils import register_all_modules
from mmengine.config import Config
from mmengine.registry import init_default_scope

from .. import models  # noqa: F401  (registers Res2NetBackbone)
from ..engine.forked import forkserver
from ..errors import UserError, error_line
from .config_maker import (RESNET_TYPES, backbone_path, config_node,
                           swap_backbone)

# Directories of mmdet's configs that hold no detector family.
NOT_FAMILIES = ('_base_', 'common', 'misc', 'legacy_1.x')
VARIANT = 'res2net50_v1b_26w_4s'
PASS, FAIL, TIMEOUT = 'pass', 'fail', 'timeout'


def mmdet_configs_root() -> str:
    """Where mmdet keeps the configs it ships in its package."""
    import mmdet
    return osp.join(osp.dirname(mmdet.__file__), '.mim', 'configs')


class FamilyConfig(NamedTuple):
    """A family and the ResNet-50 config of it that is checked."""

    family: str
    config: str  # path relative to the configs root, e.g. atss/atss_r50...


def _is_resnet50(cfg: Config) -> bool:
    model = cfg.get('model')
    if not isinstance(model, dict):
        return False
    try:
        path = backbone_path(model)
    except UserError:
        return False
    node = config_node(cfg, path)
    return node.get('type') in RESNET_TYPES and node.get('depth') == 50


def family_configs(root: str,
                   families: Optional[Sequence[str]] = None
                   ) -> List[FamilyConfig]:
    """One ResNet-50 config per family: of the family's configs with
    ``r50`` in their name, the shortest name (then the first
    alphabetically) whose model has a ResNet-50 backbone.

    Args:
        root: The configs root (:func:`mmdet_configs_root`).
        families: Only these families (all if None).

    Raises:
        UserError: A family asked for is not there, or has no ResNet-50
            config.
    """
    names = sorted(
        d for d in os.listdir(root)
        if osp.isdir(osp.join(root, d)) and d not in NOT_FAMILIES)
    if families:
        missing = sorted(set(families) - set(names))
        if missing:
            raise UserError(f'no family {missing[0]} in {root}; the families '
                            f'are {", ".join(names)}')
        names = [n for n in names if n in families]
    found = []
    for family in names:
        candidates = sorted((f for f in os.listdir(osp.join(root, family))
                             if f.endswith('.py') and 'r50' in f),
                            key=lambda f: (len(f), f))
        for name in candidates:
            try:
                cfg = Config.fromfile(osp.join(root, family, name))
            except Exception:  # a config that needs what is not installed
                continue
            if _is_resnet50(cfg):
                found.append(FamilyConfig(family, f'{family}/{name}'))
                break
        else:
            if families:
                raise UserError(f'family {family} has no ResNet-50 config')
    return found


def _reason(err: BaseException) -> str:
    """:func:`error_line`, its spaces collapsed and cut to 200 characters:
    a cell of the table."""
    kind, _, first = error_line(err).partition(': ')
    return f'{kind}: {" ".join(first.split())}'[:200]


def _values(node: Any, key: str) -> Iterator[Any]:
    """Every value of ``key`` anywhere in a config node."""
    if isinstance(node, dict):
        for k, value in node.items():
            if k == key:
                yield value
            yield from _values(value, key)
    elif isinstance(node, (list, tuple)):
        for value in node:
            yield from _values(value, key)


def _inputs(cfg: Config) -> dict:
    """mmdet's test inputs for the model of ``cfg``: boxes and masks of
    classes the model has, semantic maps for a model with a semantic or
    panoptic head, proposals for a two-stage model without an RPN."""
    model = cfg.model
    # 256x256 rather than mmdet's usual 128: DINO's two-stage encoder picks
    # its 900 queries from the feature tokens, fewer than that at 128.
    shapes = [(3, 256, 256), (3, 250, 260)]
    semantic = any(
        any(True for _ in _values(model, key))
        for key in ('semantic_head', 'panoptic_head', 'panoptic_fusion_head'))
    classes = [n for n in _values(model, 'num_classes') if isinstance(n, int)]
    num_classes = max(1, min([10] + classes))
    # mmdet's helper draws labels from 1 to num_classes - 1: none at all for
    # a model of one class (CrowdDet's person, a face detector's face),
    # whose one label is 0.
    packed = demo_mm_inputs(
        2,
        shapes,
        with_mask=True,
        with_semantic=semantic,
        num_classes=max(2, num_classes))
    if num_classes == 1:
        for sample in packed['data_samples']:
            sample.gt_instances.labels.zero_()
    if 'roi_head' in model and 'rpn_head' not in model:
        proposals = demo_mm_proposals(shapes, 100)
        for sample, boxes in zip(packed['data_samples'], proposals):
            sample.proposals = boxes
    return packed


def run_forwards(cfg: Config) -> None:
    """Build the model of ``cfg``, initialise it as for training from
    scratch (the backbone's ImageNet weights are not read: nothing is
    downloaded), and run a ``loss`` and a ``predict`` forward on mmdet's
    test inputs; raise what they raise.

    Initialised, not left at PyTorch's defaults: uninitialised, a random
    backbone's activations grow with every residual block (BN in eval mode
    does not rescale them) until a matcher meets infinities, which says
    nothing about the detector."""
    init_default_scope(cfg.get('default_scope', 'mmdet'))
    config_node(cfg, backbone_path(cfg.model)).init_cfg = None
    model = MODELS.build(cfg.model)
    model.init_weights()
    packed = _inputs(cfg)
    model.train()
    data = model.data_preprocessor(packed, True)
    model(**data, mode='loss')
    model.eval()
    with torch.no_grad():
        data = model.data_preprocessor(packed, False)
        model(**data, mode='predict')


def check_family(root: str, config: str, variant: str = VARIANT) -> dict:
    """The control and the Res2Net version of one config: each ``pass``
    or ``fail`` with the reason, and the seconds both took."""
    register_all_modules(init_default_scope=False)
    start = time.perf_counter()
    row: Dict[str, Any] = {}
    for which in ('control', 'res2net'):
        try:
            cfg = Config.fromfile(osp.join(root, config))
            if which == 'res2net':
                swap_backbone(cfg, variant)
            run_forwards(cfg)
            row[which], row[f'{which}_reason'] = PASS, ''
        except Exception as err:  # any failure is a row of the table
            row[which], row[f'{which}_reason'] = FAIL, _reason(err)
            row[f'{which}_traceback'] = traceback.format_exc(limit=-3)
    row['seconds'] = time.perf_counter() - start
    return row


def _child(root: str, config: str, variant: str, queue) -> None:
    # What the models print while built and initialised is not the table's:
    # the row comes back through the queue.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    queue.put(check_family(root, config, variant))


def check_in_process(root: str, item: FamilyConfig, *, variant: str,
                     timeout: float) -> dict:
    """:func:`check_family` in a process of its own, stopped after
    ``timeout`` seconds (both columns then say ``timeout``; ``fail`` if it
    died).

    The process is forked from the fork server of
    :mod:`projects.res2net.engine.forked`: each family starts from the same
    state, without paying for the imports again.
    """
    context = forkserver()
    results = context.Queue()
    process = context.Process(
        target=_child, args=(root, item.config, variant, results))
    process.start()  # the first waits for the server's imports
    start = time.perf_counter()
    row, deadline = None, start + timeout
    while row is None and time.perf_counter() < deadline:
        try:
            row = results.get(
                timeout=max(0.01, min(1.0, deadline - time.perf_counter())))
        except queue.Empty:
            if not process.is_alive() and results.empty():
                break  # it died without a result
    stopped = row is None and process.is_alive()
    if stopped:
        process.kill()
    process.join()
    if row is None:
        why = (f'no result within {timeout:g} s'
               if stopped else f'the process died (exit {process.exitcode})')
        outcome = TIMEOUT if stopped else FAIL
        row = dict(
            control=outcome,
            res2net=outcome,
            control_reason=why,
            res2net_reason=why,
            seconds=time.perf_counter() - start)
    return dict(family=item.family, config=item.config, **row)


def check_families(root: str,
                   items: Sequence[FamilyConfig],
                   *,
                   variant: str = VARIANT,
                   timeout: float = 300) -> Iterator[dict]:
    """:func:`check_in_process` for each item, in order."""
    for item in items:
        yield check_in_process(root, item, variant=variant, timeout=timeout)


def status(row: dict) -> str:
    """What a row means for the goal: ``ok`` (both pass), ``res2net fails``
    (the backbone's problem), ``control fails`` (outside it)."""
    if row['control'] != PASS:
        return 'control fails'
    return 'ok' if row['res2net'] == PASS else 'res2net fails'


def table(rows: Sequence[dict]) -> str:
    """The compatibility table in markdown."""
    lines = [
        '| family | config | control | Res2Net | reason | seconds |',
        '|---|---|---|---|---|---|'
    ]
    for row in rows:
        reason = row['res2net_reason'] or row['control_reason']
        if row['control'] != PASS and row['res2net_reason'] == row[
                'control_reason']:
            reason = f'both: {reason}'
        reason = reason.replace('|', '\\|')
        lines.append(f'| {row["family"]} | `{osp.basename(row["config"])}` '
                     f'| {row["control"]} | {row["res2net"]} | {reason} | '
                     f'{row["seconds"]:.0f} |')
    return '\n'.join(lines)


def summary(rows: Sequence[dict]) -> str:
    """One line: how many families, how many pass, and the goal."""
    counts = {
        s: sum(status(r) == s for r in rows)
        for s in ('ok', 'res2net fails', 'control fails')
    }
    return (f'{len(rows)} families: {counts["ok"]} pass with Res2Net as '
            f'with ResNet; {counts["res2net fails"]} fail with Res2Net only;'
            f' {counts["control fails"]} fail already with ResNet-50')
