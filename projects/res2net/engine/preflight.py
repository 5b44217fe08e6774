# Copyright (c) Res2Net-MMDet contributors. All rights reserved.
"""Checks ``tools/train.py`` runs before the Runner creates anything.

mmengine's Runner creates the work dir, its log folder and a config dump
in its constructor, and only then builds the model; it loads ``load_from``
non-strictly (a checkpoint of another architecture trains on from mostly
random weights) and reads a ``--resume`` file only once training starts.
So the tool checks here first, and a mistake ends in one line with nothing
written: the model builds (:func:`build_model`), the checkpoint to start
from fits it (:func:`check_load_from`), the one to resume from is a
checkpoint of this model (:func:`read_resume`); ``tools/test.py`` checks
its checkpoint the same way (:func:`check_weights`). Both check the types
the config names and the numbers its parts take (:func:`check_types`,
:func:`check_settings`): batch sizes, workers, the schedule, intervals, the
learning rate, image scales. What can only fail inside
the Runner is cleaned up by :func:`removed_on_early_failure`.
"""
import contextlib
import copy
import difflib
import inspect
import math
import os
import os.path as osp
import re
import shutil
from typing import Any, Callable, Iterator, List, Mapping, Optional, Tuple

import torch
from mmdet.registry import MODELS
from mmdet.utils import register_all_modules
from mmengine.config import Config
from mmengine.registry import Registry
from torch import nn

from ..errors import CheckpointError, CheckpointMismatch, UserError
from ..models.checkpoint import (TRUST_VARIABLE, check_fits, no_random_init,
                                 read_checkpoint, state_dict_of)
from .preemption import TrainingStopped

_UNEXPECTED = re.compile(r"(\w+)\.__init__\(\) got an unexpected keyword "
                         r"argument '(\w+)'")
_UNREGISTERED = re.compile(
    r'([\w.]+) is not in the (?:(\w+)::)?(\w+) registry')


def _places(node: Any, key: str, prefix: str = '') -> Iterator[tuple]:
    """``(dotted path, the dict)`` of each place in a config where ``key``
    is set."""
    if isinstance(node, Mapping):
        for name, value in node.items():
            path = f'{prefix}.{name}' if prefix else str(name)
            if name == key:
                yield path, node
            yield from _places(value, key, path)
    elif isinstance(node, (list, tuple)):
        for i, value in enumerate(node):
            yield from _places(value, key, f'{prefix}.{i}')


def _registered_class(name: str) -> Optional[type]:
    """The class registered as ``name`` in any of mmdet's registries."""
    import mmdet.registry
    for registry in vars(mmdet.registry).values():
        if isinstance(registry, Registry):
            found = registry.get(name)
            if inspect.isclass(found):
                return found
    return None


def _accepted(class_name: str) -> List[str]:
    """The keyword arguments a registered class and its bases take."""
    cls = _registered_class(class_name)
    names: List[str] = []
    for klass in inspect.getmro(cls) if cls else ():
        if '__init__' in vars(klass):
            names += list(inspect.signature(klass.__init__).parameters)
    return sorted(set(names) - {'self', 'args', 'kwargs'})


def _unknown_argument(message: str,
                      node: Mapping,
                      prefix: str = 'model') -> Optional[str]:
    """'model.backbone.depht: Res2NetBackbone takes no argument depht (did
    you mean depth?)' from a TypeError's message and the config (part,
    at ``prefix``) that was being built, or None."""
    found = _UNEXPECTED.search(message)
    if not found:
        return None
    class_name, key = found.groups()  # the class whose __init__ refused it
    where, owner = next(_places(node, key, prefix), (key, {}))
    # The type the config names, whose bases include class_name.
    class_name = owner.get('type', class_name)
    if not isinstance(class_name, str):
        class_name = getattr(class_name, '__name__', str(class_name))
    close = difflib.get_close_matches(key, _accepted(class_name), n=1)
    hint = f' (did you mean {close[0]}?)' if close else ''
    return f'{where}: {class_name} takes no argument {key}{hint}'


def _registered(name: str) -> List[str]:
    """Every type registered under the registry ``name`` (mmdet's and its
    mmengine parent's)."""
    import mmdet.registry
    names = set()
    for registry in vars(mmdet.registry).values():
        while isinstance(registry, Registry) and registry.name == name:
            names |= set(registry.module_dict)
            registry = registry.parent
    return sorted(names)


def _unknown_type(message: str) -> Optional[str]:
    """'unknown optimizer type SDG (did you mean SGD?)' from a registry's
    KeyError message, or None."""
    found = _UNREGISTERED.search(message)
    if not found:
        return None
    name, _, registry = found.groups()
    close = difflib.get_close_matches(name, _registered(registry), n=1)
    hint = f' (did you mean {close[0]}?)' if close else \
        ' (if it is yours, add its module to custom_imports)'
    return f'unknown {registry} type {name}{hint}'


# Where a config names the types mmengine builds, and the registry of each.
_TYPED_PARTS = (
    ('optim_wrapper', 'OPTIM_WRAPPERS'),
    ('optim_wrapper.optimizer', 'OPTIMIZERS'),
    ('param_scheduler', 'PARAM_SCHEDULERS'),
    ('default_hooks.*', 'HOOKS'),
    ('custom_hooks', 'HOOKS'),
    ('train_cfg', 'LOOPS'),
    ('val_cfg', 'LOOPS'),
    ('test_cfg', 'LOOPS'),
    ('*_dataloader.sampler', 'DATA_SAMPLERS'),
    ('*_dataloader.dataset', 'DATASETS'),
    ('*_dataloader.dataset.pipeline', 'TRANSFORMS'),
    ('*_evaluator', 'METRICS'),
    ('visualizer', 'VISUALIZERS'),
)


def _nodes(node: Any, parts: List[str], path: str) -> Iterator[tuple]:
    """``(path, dict)`` of the dicts at a dotted pattern (``*`` matches any
    key, ``*x`` any key that ends in ``x``, ``**`` any depth, none
    included; lists are walked)."""
    if isinstance(node, (list, tuple)):
        for i, item in enumerate(node):
            yield from _nodes(item, parts, f'{path}.{i}')
        return
    if not isinstance(node, Mapping):
        return
    if not parts:
        yield path, node
        return
    head, rest = parts[0], parts[1:]
    if head == '**':
        yield from _nodes(node, rest, path)
        rest = parts  # and deeper, below each key
    for key, value in node.items():
        if head in ('**', key) or (head.startswith('*')
                                   and str(key).endswith(head[1:])):
            yield from _nodes(value, rest, f'{path}.{key}' if path else key)


def check_types(cfg: Config) -> None:
    """Check that every type the config names for mmengine's parts is
    registered, before the Runner builds them one by one (the optimizer
    only once training starts, and a misspelled one ends in an unrelated
    TypeError inside mmengine); then the numbers those parts take
    (:func:`check_settings`).

    Raises:
        UserError: The path, the unknown type and the closest known one;
            or a number out of range, with a valid value.
    """
    import mmdet.registry
    register_all_modules()
    for pattern, name in _TYPED_PARTS:
        registry = getattr(mmdet.registry, name)
        for path, node in _nodes(cfg._cfg_dict, pattern.split('.'), ''):
            kind = node.get('type')
            if isinstance(kind, str) and registry.get(kind) is None:
                detail = _unknown_type(
                    f'{kind} is not in the {registry.name} registry')
                raise UserError(f'{cfg.filename}: {path}: {detail}; fix the '
                                'config or its --cfg-options')
    check_settings(cfg)


# A rule takes a setting's value and the dict that holds it (for the
# settings that depend on a neighbour) and returns what the value must be
# and a valid value, or None when it is valid.
Refusal = Optional[Tuple[str, Any]]
Rule = Callable[[Any, Mapping], Refusal]


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _int_from(low: int, example: Any, *, off: Optional[str] = None) -> Rule:
    """An integer >= ``low``; ``off``: what -1 means, where it is allowed
    as well."""
    also = f', or -1 for {off}' if off else ''

    def rule(value: Any, owner: Mapping) -> Refusal:
        if _is_int(value) and (value >= low or (off and value == -1)):
            return None
        return f'an integer >= {low}{also}', example

    return rule


def _positive_number(example: Any) -> Rule:
    """A finite number above 0."""

    def rule(value: Any, owner: Mapping) -> Refusal:
        if isinstance(value, (int, float)) and not isinstance(
                value, bool) and 0 < value < math.inf:
            return None
        return 'a finite number > 0', example

    return rule


def _workers_to_keep(value: Any, owner: Mapping) -> Refusal:
    """``persistent_workers``: torch's DataLoader refuses it without
    workers (a ValueError when the Runner builds the loader, a traceback
    after the work dir was made)."""
    if not value or owner.get('num_workers', 0) != 0:
        return None
    return ('False while num_workers is 0 (torch keeps workers alive only '
            'where there are some)', False)


def _after_begin(value: Any, owner: Mapping) -> Refusal:
    """A scheduler's ``end``: mmengine refuses an end not after its
    begin, when training starts."""
    begin = owner.get('begin', 0)
    low = begin + 1 if _is_int(begin) else 1
    if _is_int(value) and value >= low:
        return None
    return f'an integer > its begin ({begin})', low


def _milestones(value: Any, owner: Mapping) -> Refusal:
    """MultiStepLR's ``milestones``: a step it never reaches (a float, a
    negative number) leaves the rate as it is without a word; a bare
    integer fails inside mmengine."""
    if isinstance(value, (list, tuple)) and all(
            _is_int(step) and step >= 0 for step in value):
        return None
    return ('a list of integers >= 0 (epochs or iterations, as its by_epoch '
            'says)', '[8,11]')


def _image_scale(value: Any, owner: Mapping) -> Refusal:
    """A resize's ``scale``: mmcv takes an int or a tuple of two; a list
    (``key=[a,b]`` or ``key=a,b`` on the command line) fails in mmcv, a
    size of 0 in OpenCV: a traceback at the first batch (the val
    pipeline's, at the first validation)."""
    if value is None and owner.get('scale_factor') is not None:
        return None
    if _is_int(value) and value > 0:
        return None
    if isinstance(value, tuple) and len(value) == 2 and all(
            _is_int(side) and side > 0 for side in value):
        return None
    return 'a positive integer or a tuple of two (width, height)', \
        '(1333,800)'


# The numbers mmengine and torch refuse with a traceback (mid-run for some)
# or take without a word and misbehave on: (dotted pattern as _nodes reads
# it, ending in the key; the transform types it applies to, or all; rule).
_SETTINGS: Tuple[Tuple[str, Tuple[str, ...], Rule], ...] = (
    ('*_dataloader.batch_size', (), _int_from(1, 2)),
    ('*_dataloader.num_workers', (), _int_from(0, 2)),
    ('*_dataloader.persistent_workers', (), _workers_to_keep),
    ('train_cfg.max_epochs', (), _int_from(1, 12)),
    ('train_cfg.max_iters', (), _int_from(1, 1000)),
    ('train_cfg.val_interval', (), _int_from(1, 1)),
    ('default_hooks.logger.interval', (), _int_from(1, 50)),
    ('default_hooks.checkpoint.interval', (),
     _int_from(1, 1, off='no checkpoint but the last')),
    ('optim_wrapper.optimizer.lr', (), _positive_number(0.02)),
    ('param_scheduler.begin', (), _int_from(0, 0)),
    ('param_scheduler.end', (), _after_begin),
    ('param_scheduler.milestones', (), _milestones),
    ('*_dataloader.**.scale', ('Resize', ), _image_scale),
)


def check_settings(cfg: Config) -> None:
    """Check the numbers of the loaders, the loop, the hooks, the optimizer,
    the schedulers and the resize transforms (:data:`_SETTINGS`) before
    the Runner takes them.

    Raises:
        UserError: The first setting out of range: its key, its value, what
            it must be and a valid value, in one line.
    """
    for pattern, types, rule in _SETTINGS:
        *parents, key = pattern.split('.')
        for path, owner in _nodes(cfg._cfg_dict, parents, ''):
            kind = owner.get('type')
            # 'Resize', 'mmdet.Resize' (a scoped name): the same transform.
            if isinstance(kind, str):
                kind = kind.split('.')[-1]
            if key not in owner or (types and kind not in types):
                continue
            refused = rule(owner[key], owner)
            if refused is not None:
                wanted, example = refused
                raise UserError(
                    f'{cfg.filename}: {path}.{key}={owner[key]!r}: must be '
                    f'{wanted}, e.g. {path}.{key}={example}; fix the config '
                    'or its --cfg-options')


@contextlib.contextmanager
def config_errors(cfg: Config) -> Iterator[None]:
    """Turn the config mistakes that mmengine meets while it builds its
    parts into one line: a type no registry holds ("X is not in the Y
    registry") and a misspelled argument ("X.__init__() got an unexpected
    keyword argument"), e.g. ``train_cfg.max_iter``."""
    try:
        yield
    except (KeyError, TypeError) as err:
        message = str(err)
        detail = _unknown_type(message) if isinstance(err, KeyError) else \
            _unknown_argument(message, cfg._cfg_dict, '')
        if detail is None:
            raise
        raise UserError(f'{cfg.filename}: {detail}; fix the config or its '
                        '--cfg-options') from err


def build_from(model_cfg: Mapping) -> nn.Module:
    """``MODELS.build`` of a copy of ``model_cfg``: mmdet's DETR-style
    detectors write into their head's config while they are built, so a
    second build from the same config (the Runner's, after a check) fails.
    """
    return MODELS.build(copy.deepcopy(model_cfg))


def build_model(cfg: Config) -> nn.Module:
    """Build the config's model as the Runner will, or raise one line.

    The checks need its structure, the names and shapes of its weights, not
    their values: it is built on the meta device, where PyTorch's
    initialisation of each layer costs nothing (it is most of a build on a
    CPU: 0.3-0.9 s for an R2-101 detector, the Runner builds it again). A
    model whose construction reads its own values cannot be built there;
    it is built on the CPU instead, where a real error shows as it would in
    the Runner. The backbone's ``init_cfg`` is not applied (no weights are
    read), and on the meta device nothing is drawn either
    (:func:`no_random_init`): PyTorch draws into a meta tensor through its
    Python reference code, whose first use imports TorchDynamo, 0.6 s of
    CPU in a process that never compiles.

    Raises:
        UserError: An unknown argument (with the closest known one), a
            value out of range or an unknown type, named with the config.
    """
    register_all_modules()
    try:
        with torch.device('meta'), no_random_init():
            return build_from(cfg.model)
    except Exception:  # noqa: B902 # any error: the CPU build tells
        pass
    try:
        return build_from(cfg.model)
    except UserError as err:  # our own checks already say what to do
        raise UserError(f'{cfg.filename}: model: {err}') from err
    except (TypeError, KeyError, ValueError, AssertionError) as err:
        message = str(err).strip().splitlines()[0] if str(err).strip() else ''
        detail = _unknown_argument(message, cfg.model) or \
            _unknown_type(message) or f'{type(err).__name__}: {message}'
        raise UserError(
            f'{cfg.filename}: the model cannot be built: '
            f'{detail}; fix the config or its --cfg-options') from err


def check_weights(model: nn.Module, path: str, *, what: str,
                  fix: str) -> Mapping:
    """Read a checkpoint and check that its weights fit ``model`` exactly.

    The file is mapped, not read (:func:`read_checkpoint`'s ``mmap``): the
    check needs the names and shapes, the Runner reads the values later.

    Returns:
        The checkpoint.

    Raises:
        CheckpointError: The file is not a checkpoint, or its weights do not
            fit: the missing, unexpected and mis-shaped keys, counted, with
            the first few named.
    """
    ckpt = read_checkpoint(path, what=what, fix=fix, mmap=True)
    if 'state_dict' not in ckpt and not all(
            isinstance(v, torch.Tensor) for v in ckpt.values()):
        raise CheckpointError(f'{what} {path} holds no state_dict (its keys: '
                              f'{", ".join(list(ckpt)[:5])}); {fix}')
    check_fits(
        model,
        state_dict_of(ckpt),
        source=f'{what} {path}',
        fix=fix,
        ignore_prefixes=())
    return ckpt


def check_load_from(model: nn.Module, path: str, *, partial: bool) -> str:
    """Check that ``load_from`` fits ``model``; return what will be loaded,
    for the log.

    Args:
        partial: Load only what fits, on purpose (``--partial-load``):
            the mismatch is returned, not raised.

    Raises:
        CheckpointError: The file is not a checkpoint, or (without
            ``partial``) its weights do not fit (:func:`check_weights`).
    """
    fix = ('loading only the weights that fit (--partial-load); the others '
           'keep their initialisation') if partial else (
               'pass a checkpoint of this config\'s model, or --partial-load '
               'to load only the weights that fit')
    try:
        check_weights(model, path, what='load_from checkpoint', fix=fix)
    except CheckpointMismatch as err:
        if not partial:
            raise
        return str(err)
    return f'load_from {path}: every weight fits'


def latest_checkpoint(work_dir: str) -> Optional[str]:
    """The checkpoint ``--resume`` continues from: the one ``last_checkpoint``
    names, else the newest ``iter_N.pth``/``epoch_N.pth`` of the work dir,
    else None.

    mmengine writes ``last_checkpoint`` in place after each save: a run
    killed in that moment leaves it empty, while the checkpoint it was
    about to name is already whole (:mod:`~projects.res2net.engine.fileio`).
    """
    record = osp.join(work_dir, 'last_checkpoint')
    if osp.isfile(record):
        with open(record, encoding='utf-8') as f:
            named = f.read().strip()
        if named and osp.isfile(named):
            return named
    found = []
    for name in os.listdir(work_dir) if osp.isdir(work_dir) else ():
        match = re.fullmatch(r'(iter|epoch)_(\d+)\.pth', name)
        if match:
            found.append((int(match.group(2)), osp.join(work_dir, name)))
    return max(found)[1] if found else None


def read_resume(model: nn.Module, path: str) -> Optional[int]:
    """Check a checkpoint to resume from; return the seed its run used.

    Raises:
        CheckpointError: Not a checkpoint of a training run, or not of this
            model.
    """
    fix = ('pass a checkpoint that tools/train.py wrote for this config '
           '(see last_checkpoint in its work dir)')
    ckpt = check_weights(
        model, path, what='checkpoint to resume from', fix=fix)
    meta = ckpt.get('meta')
    if not isinstance(meta, Mapping) or 'iter' not in meta:
        raise CheckpointError(
            f'{path} is no training checkpoint (it has no meta.iter, e.g. a '
            f'published or converted file); {fix}')
    return meta.get('seed')


@contextlib.contextmanager
def removed_on_early_failure(work_dir: str) -> Iterator[None]:
    """Remove what a run created in ``work_dir`` if it fails before its
    first checkpoint.

    A failure that only the Runner can find (a dataset that does not load,
    an error in the first iteration) would otherwise leave a log folder
    and a config dump behind. Once a checkpoint exists, everything stays:
    the run did work worth keeping.
    """
    existed = osp.isdir(work_dir)
    before = set(os.listdir(work_dir)) if existed else set()
    try:
        yield
    except TrainingStopped:
        raise  # a stop at a checkpoint, not a failure
    except BaseException:
        if osp.isdir(work_dir):
            created = set(os.listdir(work_dir)) - before
            if not any(name.endswith('.pth') for name in created):
                if not existed:
                    shutil.rmtree(work_dir, ignore_errors=True)
                else:
                    for name in created:
                        path = osp.join(work_dir, name)
                        if osp.isdir(path):
                            shutil.rmtree(path, ignore_errors=True)
                        else:
                            os.remove(path)
        raise


def trust_checkpoints() -> None:
    """Let torch load checkpoints in full (``--trust-checkpoint``)."""
    os.environ[TRUST_VARIABLE] = '1'
