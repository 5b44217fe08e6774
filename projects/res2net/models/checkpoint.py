# Copyright (c) Res2Net-MMDet contributors. All rights reserved.
"""Reading checkpoints: backbone weights, and mmengine's own checkpoints.

Two problems live here, once, so that no tool has to work around them:

* mmengine 0.10.7 calls ``torch.load`` without ``weights_only``; since torch
  2.6 that means ``weights_only=True``, which refuses the ``HistoryBuffer``
  and numpy objects that mmengine itself pickles into every checkpoint, so
  ``--resume`` and ``test.py CHECKPOINT`` break. Rather than switching the
  safety off, :func:`allow_mmengine_checkpoints` adds exactly those types to
  torch's allow-list of safe globals.
* mmengine's ``Pretrained`` init loads with ``strict=False`` and turns a
  network failure into a traceback, so a wrong or unreachable file either
  silently leaves layers random or drowns the cause. :func:`load_pretrained`
  loads strictly and raises a one-line :class:`CheckpointError` instead.
* mmengine fetches ``http(s)://`` and ``open-mmlab://`` checkpoints with
  torch's hub loader, which unpickles in full (``weights_only=False``):
  a URL would run whatever its pickle names. :func:`allow_mmengine_checkpoints`
  also registers loaders for those schemes (mmengine's ``CheckpointLoader``
  registry) that download as mmengine does, into the same cache, and load
  like a local file: weights-only unless ``--trust-checkpoint``.
* A model built only to be given a checkpoint's weights draws random
  numbers for each of its parameters first, which the checkpoint then
  replaces: :func:`no_random_init` builds it without them.
"""
import contextlib
import logging
import os
import os.path as osp
import pickle
import re
import zipfile
from collections.abc import Mapping
from typing import Any, Iterator, Optional, Tuple
from urllib.error import URLError
from urllib.parse import urlparse

import numpy as np
import torch
from mmengine.dist import get_dist_info
from mmengine.logging import HistoryBuffer, print_log
from mmengine.runner.checkpoint import (CheckpointLoader, _get_mmengine_home,
                                        get_deprecated_model_names,
                                        get_external_models)
from torch import nn
from torch.overrides import TorchFunctionMode

from ..errors import CheckpointError, CheckpointMismatch

# The statistics methods that mmengine's HistoryBuffer registers by default
# and pickles along with every buffer.
_HISTORY_BUFFER_METHODS = ('min', 'max', 'mean', 'current')

# torch's switch for loading a pickle in full (it runs whatever the pickle
# names): set only by --trust-checkpoint, for a file the user vouches for.
TRUST_VARIABLE = 'TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD'
# mmengine's names of its model zoo's files (``open-mmlab://NAME``).
_MODEL_ZOO_SCHEMES = ('open-mmlab://', 'openmmlab://')

# The way past the weights-only loader, for a file the user vouches for
# (``--trust-checkpoint`` sets torch's switch, see the tools' CLI).
TRUST_FIX = ('if you trust the file (it can run code when loaded), pass '
             '--trust-checkpoint')

# How to point a config's backbone at other weights.
_INIT_FIX = ('set model.backbone.init_cfg.checkpoint=/path/to/weights.pth, '
             'or model.backbone.init_cfg=None to train from scratch')

# Buffers that may legitimately be absent from older checkpoints; BatchNorm
# fills them in itself when loading.
_OPTIONAL_SUFFIXES = ('num_batches_tracked', )


def _history_buffer_method(owner: Any, name: str) -> Any:
    """``getattr``, restricted to what mmengine's checkpoints need.

    A ``HistoryBuffer`` pickles its statistics methods, and Python pickles a
    method such as ``HistoryBuffer.min`` as ``getattr(HistoryBuffer, 'min')``.
    Allowing ``getattr`` itself would let a checkpoint reach any attribute.
    """
    if owner is not HistoryBuffer or name not in _HISTORY_BUFFER_METHODS:
        raise pickle.UnpicklingError(
            f'getattr({owner!r}, {name!r}) is not allowed in a checkpoint')
    return getattr(owner, name)


def allow_mmengine_checkpoints() -> None:
    """Let ``torch.load(weights_only=True)`` read mmengine's checkpoints.

    mmengine stores its message hub (``HistoryBuffer`` objects holding numpy
    arrays, numpy scalars and their statistics methods) in every checkpoint
    it saves. These are plain data containers, so allow-listing exactly them
    keeps the weights-only unpickler on for everything else. Remote
    checkpoints (``http(s)://``, ``open-mmlab://``) are loaded by
    :func:`load_remote` and :func:`load_model_zoo`, so that the same holds
    for them.
    """
    multiarray = np._core.multiarray if hasattr(
        np, '_core') else np.core.multiarray
    dtype_classes = {
        type(np.dtype(name))
        for name in ('float16', 'float32', 'float64', 'int32', 'int64', 'bool',
                     'uint8')
    }
    torch.serialization.add_safe_globals([
        HistoryBuffer, np.ndarray, np.dtype, multiarray._reconstruct,
        multiarray.scalar, *sorted(dtype_classes, key=str),
        (_history_buffer_method, 'builtins.getattr')
    ])
    # Remote files as local ones: through the same weights-only loader.
    CheckpointLoader.register_scheme(
        prefixes=('http://', 'https://'), loader=load_remote, force=True)
    CheckpointLoader.register_scheme(
        prefixes=_MODEL_ZOO_SCHEMES, loader=load_model_zoo, force=True)


def cache_path(url: str, model_dir: Optional[str] = None) -> str:
    """Where ``url`` is cached: the file torch's ``load_state_dict_from_url``
    (which mmengine uses) would cache, ``<hub dir>/checkpoints/<file
    name>``, so that a file fetched before, by either, is not fetched
    again."""
    model_dir = model_dir or osp.join(torch.hub.get_dir(), 'checkpoints')
    return osp.join(model_dir, osp.basename(urlparse(url).path))


def download(url: str, model_dir: Optional[str] = None) -> str:
    """The local copy of ``url`` (:func:`cache_path`), fetched if absent."""
    cached = cache_path(url, model_dir)
    if not osp.isfile(cached):
        os.makedirs(osp.dirname(cached), exist_ok=True)
        print_log(f'downloading {url} to {cached}', logger='current')
        # Written to a temporary name and renamed: never a partial file.
        torch.hub.download_url_to_file(url, cached, progress=False)
    return cached


def load_remote(filename: str,
                map_location: Optional[str] = None,
                model_dir: Optional[str] = None) -> Any:
    """mmengine's ``http(s)://`` checkpoint loader, loading weights-only.

    As mmengine's ``load_from_http``: in a distributed run local rank 0
    downloads while the others wait. Then ``torch.load`` with its default,
    ``weights_only=True`` (the mmengine allow-list above), unless
    ``--trust-checkpoint`` set :data:`TRUST_VARIABLE`.
    """
    rank, world_size = get_dist_info()
    if rank == 0:
        cached = download(filename, model_dir)
    if world_size > 1:
        torch.distributed.barrier()
        if rank > 0:
            cached = download(filename, model_dir)
    return torch.load(cached, map_location=map_location)


def _model_zoo_name(filename: str) -> Tuple[str, str]:
    """``(scheme, NAME)`` of mmengine's model-zoo name
    ``open-mmlab://NAME``, a deprecated ``NAME`` followed to the one that
    replaced it; ``('', filename)`` for any other filename."""
    scheme = next((s for s in _MODEL_ZOO_SCHEMES if filename.startswith(s)),
                  '')
    if not scheme:
        return '', filename
    name = filename[len(scheme):]
    return scheme, get_deprecated_model_names().get(name, name)


def load_model_zoo(filename: str, map_location: Optional[str] = None) -> Any:
    """mmengine's ``open-mmlab://NAME`` loader, through :func:`load_remote`.

    The name is looked up in mmengine's model-zoo table (a ``KeyError`` for
    an unknown one, as mmengine raises); a URL is fetched and cached, a
    relative path is a file under mmengine's home.
    """
    scheme, name = _model_zoo_name(filename)
    if f'{scheme}{name}' != filename:
        print_log(
            f'{filename} is deprecated in favor of {scheme}{name}',
            logger='current',
            level=logging.WARNING)
    url = get_external_models()[name]
    if url.startswith(('http://', 'https://')):
        return load_remote(url, map_location=map_location)
    path = osp.join(_get_mmengine_home(), url)
    if not osp.isfile(path):
        raise FileNotFoundError(f'{path} can not be found.')
    return torch.load(path, map_location=map_location)


def _fetch_hint(checkpoint: str) -> str:
    """Explain where a remote checkpoint comes from and where it is cached."""
    scheme, name = _model_zoo_name(checkpoint)
    url = get_external_models().get(name, '') if scheme else checkpoint
    if not url.startswith(('http://', 'https://')):
        return ''
    return f'download {url} to {cache_path(url)}, or '


def read_checkpoint(checkpoint: str,
                    *,
                    what: str,
                    fix: str,
                    map_location: str = 'cpu',
                    mmap: bool = False) -> Mapping:
    """Read a checkpoint as mmengine's Runner will, or raise one line.

    The one reader of the project: backbone weights, ``load_from``,
    ``--resume`` and ``test.py``'s checkpoint, the files ``publish_model.py``
    publishes. torch loads with ``weights_only=True`` and the allow-list that
    :func:`allow_mmengine_checkpoints` sets up: a pickle that needs anything
    else is refused, never run, unless the user passed
    ``--trust-checkpoint``.

    Args:
        checkpoint: A file path, an ``http(s)://`` URL or an mmengine model
            name such as ``open-mmlab://res2net101_v1d_26w_4s``. Remote files
            are looked up in torch's hub cache before any download.
        what: What the file is, for messages.
        fix: What to tell the user to do when the file cannot be read.
        map_location: Passed to ``torch.load``.
        mmap: Map a local file instead of reading it, where torch can (its
            zip format, which ``torch.save`` writes since torch 1.6): the
            tensors' names, shapes and the metadata are there at once, their
            values are read only if used. For the checks that look at names
            and shapes: a 500 MB detector checkpoint is not read twice, once
            for the check and once by the Runner.

    Returns:
        The checkpoint: a mapping (mmengine's, with ``state_dict`` and
        ``meta``, or a bare state dict).

    Raises:
        CheckpointError: The file does not exist, cannot be fetched, is not
            a checkpoint, or its pickle needs globals outside the allow-list.
    """
    if '://' not in checkpoint and not osp.isfile(checkpoint):
        raise CheckpointError(f'{what} not found: {checkpoint}; {fix}')
    try:
        if mmap and '://' not in checkpoint and zipfile.is_zipfile(checkpoint):
            # As mmengine's loader reads a local file, mapped.
            ckpt = torch.load(checkpoint, map_location=map_location, mmap=True)
        else:
            ckpt = CheckpointLoader.load_checkpoint(
                checkpoint, map_location=map_location, logger='current')
    except (URLError, ConnectionError, TimeoutError) as err:
        reason = getattr(err, 'reason', err)
        raise CheckpointError(f'cannot fetch {what} {checkpoint} ({reason}); '
                              f'{_fetch_hint(checkpoint)}{fix}') from err
    except KeyError as err:
        if checkpoint.startswith(_MODEL_ZOO_SCHEMES):  # an unknown name
            raise CheckpointError(
                f'unknown model name in {checkpoint}: {err}; {fix}') from err
        raise _unreadable(checkpoint, err, what=what, fix=fix) from err
    except Exception as err:  # torch.load's many ways to reject a file
        raise _unreadable(checkpoint, err, what=what, fix=fix) from err
    if not isinstance(ckpt, Mapping):
        raise CheckpointError(
            f'{what} {checkpoint} holds a {type(ckpt).__name__}, not a '
            f'checkpoint; {fix}')
    return ckpt


def _unreadable(checkpoint: str, err: Exception, *, what: str,
                fix: str) -> CheckpointError:
    """The one line for a file that torch's loader refused."""
    text = str(err)
    # torch names the global that its weights-only unpickler refused.
    names = sorted(set(re.findall(r'GLOBAL ([\w.]+)', text)))
    if names:
        return CheckpointError(
            f'{what} {checkpoint} is refused: its pickle needs '
            f'{", ".join(names)}, outside the checkpoint allow-list; '
            f'{TRUST_FIX}')
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    # A weights-only failure's first lines are torch's general advice.
    first = lines[-2] if 'Weights only load failed' in text and \
        len(lines) > 2 else (lines[0] if lines else '')
    return CheckpointError(
        f'{what} {checkpoint} is not a checkpoint ({type(err).__name__}: '
        f'{first}); {fix}')


def read_state_dict(checkpoint: str,
                    map_location: str = 'cpu',
                    *,
                    what: str = 'backbone weights',
                    fix: str = _INIT_FIX) -> Mapping[str, torch.Tensor]:
    """The weights of a checkpoint (see :func:`read_checkpoint`; by
    default backbone weights): its ``state_dict``, or the checkpoint itself
    when it is a bare state dict."""
    return state_dict_of(
        read_checkpoint(
            checkpoint, what=what, fix=fix, map_location=map_location))


def state_dict_of(ckpt: Mapping) -> Mapping[str, torch.Tensor]:
    """The weights of a checkpoint (its ``state_dict``, or the checkpoint
    itself when it is a bare state dict), named as the model names them."""
    state = ckpt.get('state_dict', ckpt)
    # Checkpoints saved from a DataParallel/DDP wrapper carry this prefix.
    return {k.removeprefix('module.'): v for k, v in state.items()}


def _summarise(keys: list, what: str) -> str:
    shown = ', '.join(keys[:3]) + (', ...' if len(keys) > 3 else '')
    return f'{len(keys)} {what} ({shown})'


def check_fits(module: nn.Module,
               state: Mapping[str, torch.Tensor],
               *,
               source: str,
               fix: str,
               ignore_prefixes: tuple = ('fc.', )) -> None:
    """Raise a one-line :class:`CheckpointError` unless ``state`` fits.

    Every parameter and buffer of ``module`` must be in ``state`` with the
    same shape, and ``state`` may hold nothing else but entries starting with
    ``ignore_prefixes``.

    Args:
        module: The network the weights are for.
        state: The weights.
        source: Where they come from, for the message.
        fix: What the user can do about a mismatch, for the message.
        ignore_prefixes: Entries of ``state`` that may be dropped.
    """
    expected = module.state_dict()
    missing = [
        k for k in expected
        if k not in state and not k.endswith(_OPTIONAL_SUFFIXES)
    ]
    unexpected = [
        k for k in state
        if k not in expected and not k.startswith(ignore_prefixes)
    ]
    reshaped = [
        f'{k} {tuple(state[k].shape)} vs {tuple(v.shape)}'
        for k, v in expected.items() if k in state
        and hasattr(state[k], 'shape') and state[k].shape != v.shape
    ]
    if missing or unexpected or reshaped:
        problems = [
            _summarise(keys, what)
            for keys, what in ((missing, 'missing keys'), (unexpected,
                                                           'unexpected keys'),
                               (reshaped, 'shape mismatches')) if keys
        ]
        raise CheckpointMismatch(f'{source} does not fit '
                                 f'{type(module).__name__}: '
                                 f'{"; ".join(problems)}; {fix}')


def load_pretrained(module: nn.Module,
                    checkpoint: str,
                    *,
                    prefix: Optional[str] = None,
                    map_location: str = 'cpu',
                    ignore_prefixes: tuple = ('fc.', )) -> None:
    """Load backbone weights strictly, or raise a one-line error.

    Every parameter and buffer of ``module`` must be in the checkpoint with
    the same shape. Checkpoint entries starting with ``ignore_prefixes`` (the
    ImageNet classifier) are dropped; any other extra entry is an error, as
    it means the checkpoint was made for a different network.

    Args:
        module: The backbone to fill.
        checkpoint: See :func:`read_state_dict`.
        prefix: Only use the entries under this prefix, with the prefix
            removed, e.g. ``'backbone.'`` for a whole-detector checkpoint.
        map_location: Passed to ``torch.load``.
        ignore_prefixes: Entries of the checkpoint that may be dropped.

    Raises:
        CheckpointError: The checkpoint cannot be read or does not fit.
    """
    state = read_state_dict(checkpoint, map_location)
    if prefix:
        state = {
            k[len(prefix):]: v
            for k, v in state.items() if k.startswith(prefix)
        }
    hint = ''
    if not prefix and any(k.startswith('backbone.') for k in state):
        hint = ("it looks like a detector checkpoint: add prefix='backbone.' "
                'to init_cfg; ')
    check_fits(
        module,
        state,
        source=checkpoint,
        ignore_prefixes=ignore_prefixes,
        fix=hint + 'check the backbone settings (depth, scales, base_width, '
        'groups, stem_type, avg_down) or convert the weights with '
        'tools/model_converters/res2net_to_backbone.py')
    expected = module.state_dict()
    module.load_state_dict({k: state[k]
                            for k in expected if k in state},
                           strict=False)
    print_log(
        f'loaded {len(expected)} backbone tensors from {checkpoint}',
        logger='current')


class StrictPretrainedInit:
    """A backbone mixin: ``init_weights`` loads a ``Pretrained`` init_cfg
    with :func:`load_pretrained` (strictly, one line on any problem)
    instead of mmengine's non-strict load; any other init_cfg goes to the
    next class's ``init_weights``. Put it first among the bases."""

    def init_weights(self) -> None:
        """Initialise, loading ``Pretrained`` weights strictly."""
        cfg = self.init_cfg
        if isinstance(cfg, dict) and cfg.get('type') == 'Pretrained':
            options = {k: v for k, v in cfg.items() if k != 'type'}
            load_pretrained(self, **options)
            self._is_init = True
        else:
            super().init_weights()


class _NoRandomParameterInit(TorchFunctionMode):
    """Skip the random draws that initialise parameters.

    PyTorch's layers draw their weights in their constructors
    (``kaiming_uniform_`` for each conv and linear layer), mmdet's
    ``init_weights`` draws again (``normal_``, ``xavier_uniform_``, ...):
    each ends in one of :attr:`DRAWS`. Only draws into an ``nn.Parameter``
    are skipped, which a strict load replaces whole; a buffer or any other
    tensor (anchors, positional encodings) is made as always.
    """

    # nn.init's functions that dispatch as themselves, and the tensor
    # methods that kaiming_normal_, xavier_* and mmengine's inits end in
    # (torch's trunc_normal_ draws into a temporary tensor: it still runs).
    DRAWS = frozenset({
        nn.init.uniform_, nn.init.normal_, nn.init.kaiming_uniform_,
        torch.Tensor.uniform_, torch.Tensor.normal_
    })

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in self.DRAWS:
            target = kwargs.get('tensor', args[0] if args else None)
            if isinstance(target, nn.Parameter):
                return target
        return func(*args, **kwargs)


@contextlib.contextmanager
def no_random_init() -> Iterator[None]:
    """Build models without drawing random values for their parameters.

    For a model whose parameters a checkpoint will replace (every one of
    them: loaded strictly, or after :func:`check_fits`), or whose values
    nothing reads but a count (a size table). The draws are most of
    building a detector on a CPU (0.5-1 s for an R2-101 HTC); the
    parameters hold whatever memory they were given. Nothing drawn also
    means the global random generator is not advanced.
    """
    with _NoRandomParameterInit():
        yield
