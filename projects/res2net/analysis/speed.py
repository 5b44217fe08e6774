# Copyright (c) Res2Net-MMDet contributors. All rights reserved.
"""What the speed tools share: the networks ours is compared with, the
interleaved clock, and the memory gauge.

``tools/analysis_tools/benchmark.py`` (a detector's inference),
``benchmark_backbone.py`` (backbones) and ``benchmark_train.py`` (a
detector's training step) compare ours with mmdet's ``ResNet`` and mmdet's
own ``Res2Net`` built with the same settings, time the candidates
interleaved in one process (a CPU's speed drifts by ±15% over minutes, so
only ratios from one run mean anything) and report peak memory the same
way.
"""
import argparse
import os
import resource
import statistics
import sys
import time
from typing import Callable, Dict, List, Mapping, Sequence, Tuple

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from ..engine.cli import choose_device
from ..errors import UserError

# Linux's per-process memory accounting.
_STATUS, _CLEAR_REFS = '/proc/self/status', '/proc/self/clear_refs'

# The backbones a Res2Net backbone config can be compared with.
COUNTERPARTS = ('resnet', 'mmdet-res2net')

# The settings that mean the same in ours, mmdet's ResNet and mmdet's
# Res2Net; the rest (scales, widths, stems) is what makes each network.
_SHARED_SETTINGS = ('depth', 'base_channels', 'stem_channels', 'num_stages',
                    'strides', 'dilations', 'out_indices', 'style',
                    'frozen_stages', 'conv_cfg', 'norm_cfg', 'norm_eval',
                    'dcn', 'stage_with_dcn', 'plugins', 'with_cp')


def counterpart(backbone: Mapping, kind: str) -> dict:
    """The config of mmdet's network of ``kind`` in place of ``backbone``.

    Args:
        backbone: A ``Res2NetBackbone`` config.
        kind: ``'resnet'``: mmdet's ``ResNet`` of the same depth (its basic
            stem, as mmdet's R-101 detectors); ``'mmdet-res2net'``: mmdet's
            ``Res2Net`` with the same scales and width (its deep stem and
            avg-down, as ours in the detector configs).

    Both have random weights (``init_cfg=None``) and the same output
    channels, so a detector's neck and heads take them unchanged.
    """
    if backbone.get('type') == 'Res2NetDLA':
        raise UserError('the config\'s backbone is Res2NetDLA, whose '
                        'channels no mmdet backbone has: compare the '
                        'backbones with tools/analysis_tools/'
                        'benchmark_backbone.py --family dla')
    if backbone.get('type') != 'Res2NetBackbone':
        raise UserError(f'the config\'s backbone is {backbone.get("type")}, '
                        'not Res2NetBackbone: nothing to compare it with')
    shared = {k: backbone[k] for k in _SHARED_SETTINGS if k in backbone}
    if kind == 'resnet':
        return dict(type='ResNet', init_cfg=None, **shared)
    if kind == 'mmdet-res2net':
        return dict(
            type='Res2Net',
            scales=backbone.get('scales', 4),
            base_width=backbone.get('base_width', 26),
            init_cfg=None,
            **shared)
    raise UserError(f'no counterpart {kind!r}: choose one of '
                    f'{", ".join(COUNTERPARTS)}')


def calibrate_batch_norms(model: nn.Module,
                          forward: Callable[[], object],
                          steps: int = 2) -> int:
    """Set every BatchNorm's running statistics to those of ``forward``'s
    activations: a network with random weights then computes what a trained
    one would in scale.

    With random weights and BN statistics at their defaults (mean 0,
    variance 1) nothing normalises the activations: they grow through a deep
    network in a way that differs from one architecture to another (mmdet's
    Res2Net-101 detector reached losses of 1e8 where ours stayed at 5),
    and the data-dependent work after the backbone (proposals, NMS,
    sampling) then differs too, whatever the backbones' speed. Calibrated,
    every network works on normalised features. The BN layers are in
    training mode only for the calibration, with a cumulative average
    (``momentum=None``), and are put back as they were.

    Returns:
        How many BN layers were calibrated.
    """
    norms = [m for m in model.modules() if isinstance(m, _BatchNorm)]
    saved = [(m.training, m.momentum) for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
        m.train()
    try:
        with torch.no_grad():
            for _ in range(steps):
                forward()
    except ValueError as err:  # BN's "Expected more than 1 value ..."
        raise UserError(f'cannot calibrate the BN statistics on this input '
                        f'({err}); use a larger input size or batch') from err
    finally:
        for m, (training, momentum) in zip(norms, saved):
            m.train(training)
            m.momentum = momentum
    return len(norms)


def sync(device: str) -> None:
    """Wait for the device's queued work, so that a clock reading means it
    is done."""
    if device == 'cuda':
        torch.cuda.synchronize()


def rotated(names: Sequence[str], round_: int) -> List[str]:
    """``names`` in the order of interleaved round ``round_``: each round
    starts one further on, so that no candidate always runs first (after
    the others' memory traffic)."""
    shift = round_ % len(names)
    return list(names[shift:]) + list(names[:shift])


def _cpu_model() -> str:
    """The CPU's model name from ``/proc/cpuinfo`` (Linux), else ``cpu``."""
    try:
        with open('/proc/cpuinfo', encoding='utf-8') as f:
            for line in f:
                if line.startswith('model name'):
                    return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return 'cpu'


def describe_device(device: str) -> str:
    """The device as the speed tools' reports and the zoo tables name it:
    the CPU's model with the thread count, or the GPU's name."""
    if device == 'cuda':
        return torch.cuda.get_device_name()
    model = _cpu_model()
    if 'cpu' not in model.lower():
        model += ' CPU'
    return f'{model}, {torch.get_num_threads()} threads'


def interleaved_seconds(runs: Mapping[str, Callable[[], object]],
                        device: str,
                        repeats: int,
                        warmup: int = 0,
                        on_step: Callable[[], None] = lambda: None
                        ) -> Dict[str, List[float]]:
    """Time each of ``runs`` ``repeats`` times, one call of each in turn.

    The order rotates from one round to the next (:func:`rotated`), and a
    machine that gets faster or slower during the run affects all alike.

    Returns:
        The seconds of each call, by name.
    """
    names = list(runs)
    for _ in range(warmup):
        for name in names:
            runs[name]()
    times: Dict[str, List[float]] = {name: [] for name in names}
    for repeat in range(repeats):
        for name in rotated(names, repeat):
            sync(device)
            start = time.perf_counter()
            runs[name]()
            sync(device)
            times[name].append(time.perf_counter() - start)
            on_step()
    return times


def medians(times: Mapping[str, Sequence[float]]) -> Dict[str, float]:
    """The median of each list of seconds."""
    return {name: statistics.median(values) for name, values in times.items()}


def reset_peak_memory(device: str) -> None:
    """Start :func:`peak_memory` afresh from what is in use now.

    On CUDA the allocator's peak; on Linux the process's peak resident set
    (``VmHWM``, reset through ``/proc/self/clear_refs``), so that a peak
    reached earlier (importing the libraries, building other models) is
    not counted. Elsewhere on a CPU there is nothing to reset.
    """
    if device == 'cuda':
        torch.cuda.reset_peak_memory_stats()
    elif os.path.exists(_CLEAR_REFS):
        with open(_CLEAR_REFS, 'w') as f:
            f.write('5')


def peak_memory(device: str) -> Tuple[float, str]:
    """Peak memory of this process in MB (2**20 bytes), and what it is:
    ``cuda_max_allocated`` (``torch.cuda.max_memory_allocated``) or
    ``cpu_max_rss`` (the peak resident set size: Python, libraries,
    weights and activations together; since :func:`reset_peak_memory`
    where that could reset it)."""
    if device == 'cuda':
        return torch.cuda.max_memory_allocated() / 2**20, 'cuda_max_allocated'
    if os.path.exists(_STATUS):
        with open(_STATUS) as f:
            for line in f:
                if line.startswith('VmHWM:'):  # in kB
                    return int(line.split()[1]) / 2**10, 'cpu_max_rss'
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports KiB, macOS bytes.
    mb = rss / 2**20 if sys.platform == 'darwin' else rss / 2**10
    return mb, 'cpu_max_rss'


def add_device_arguments(parser: argparse.ArgumentParser, *,
                         amp_help: str) -> None:
    """``--device`` and ``--amp``, as every speed tool takes them."""
    parser.add_argument(
        '--device',
        choices=('cpu', 'cuda'),
        help='default: cuda when available, else cpu')
    parser.add_argument('--amp', action='store_true', help=amp_help)


def add_timing_arguments(parser: argparse.ArgumentParser, *,
                         size: Tuple[int, int], batch: int, repeats: int,
                         warmup: int, what: str) -> None:
    """The input and clock options of the speed tools that time one
    synthetic batch: ``--size``, ``--batch``, ``--repeats``, ``--warmup``,
    ``--threads``; ``what`` names what is timed (``'runs'``, ``'steps'``).
    """
    parser.add_argument(
        '--size',
        type=int,
        nargs=2,
        default=size,
        metavar=('H', 'W'),
        help=f'input height and width (default: {size[0]} {size[1]})')
    parser.add_argument(
        '--batch', type=int, default=batch, help=f'(default: {batch})')
    parser.add_argument(
        '--repeats',
        type=int,
        default=repeats,
        help=f'timed {what} of each model, interleaved (default: {repeats})')
    parser.add_argument(
        '--warmup',
        type=int,
        default=warmup,
        help=f'untimed {what} of each model first (default: {warmup})')
    parser.add_argument(
        '--threads',
        type=int,
        help=f'CPU threads for torch (default: torch\'s, here '
        f'{torch.get_num_threads()})')


def check_timing_arguments(args: argparse.Namespace) -> str:
    """Check the options of :func:`add_timing_arguments` and
    :func:`add_device_arguments`, apply ``--threads``, and return the
    device.

    Raises:
        UserError: A count out of range, or ``--amp`` without a GPU.
    """
    if args.repeats < 1 or args.warmup < 0 or args.batch < 1:
        raise UserError('--repeats and --batch must be at least 1 and '
                        '--warmup at least 0')
    device = device_of(args)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    return device


def device_of(args: argparse.Namespace) -> str:
    """The device of :func:`add_device_arguments`' options.

    Raises:
        UserError: ``--device cuda`` or ``--amp`` without a GPU.
    """
    device = choose_device(args.device)
    if args.amp and device != 'cuda':
        raise UserError('--amp needs a GPU (float16 autocast, mmengine\'s '
                        'AmpOptimWrapper); drop it on the CPU')
    return device
