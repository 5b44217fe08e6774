# Copyright (c) Res2Net-MMDet contributors. All rights reserved.
"""Backbone latency: mmdet's ResNet-101 and Res2Net-101 against ours.

Builds, in one process, mmdet's ``ResNet`` (depth 101), mmdet's ``Res2Net``
(101, 26w×4s) and ``Res2NetBackbone`` with the detector configs' settings
(``configs/_base_/res2net_backbones.py``), each in up to four modes (on
the CPU, ours runs inference on an NCHW input in channels-last, see
``cpu_channels_last``: in ``nchw`` mode it is also timed with that off):

* ``nchw``: eager, eval mode, contiguous NCHW, as trained;
* ``channels_last``: the same in ``torch.channels_last``;
* ``deploy``: the deploy form of ``projects/res2net/deploy.py``: BN folded
  into the convs, channels-last;
* ``compiled``: the deploy form compiled with ``torch.compile`` (inductor,
  freezing); compiling takes minutes on a small CPU.

Each backbone gets random weights, BN statistics calibrated on the input
and random BN affine terms (so that folding changes something), the same
in all its modes, and each deployed
model's outputs are checked against its eager ``nchw`` outputs. The runs
are interleaved (``projects/res2net/speed.py``): one forward of each model
in turn, ``--repeats`` times, in a rotating order, so that a machine
getting faster or slower during the run affects all alike; the
median of each is reported with its ratio to ResNet-101 in the same mode,
to mmdet's Res2Net-101 in the same mode and to mmdet's Res2Net-101 in eager
NCHW, and the achieved GFLOP/s (2 FLOPs per multiply-add, counted by
mmengine's ``FlopAnalyzer``) against a dense 1x1 conv's, timed in the same
rounds as the peak the hardware reaches. Only ratios from one run mean
anything: CPU timings move by ±15% between runs.

``--train`` times forward + backward of the model in training mode instead
(no deploy modes). ``--amp`` (CUDA only) runs under float16 autocast.

Example:
    python tools/analysis_tools/benchmark_backbone.py --size 512 512 \\
        --threads 2 --repeats 7 --out backbone_speed.json
"""
import argparse
import sys
from contextlib import nullcontext
from copy import deepcopy
from typing import Callable, Dict, List, NamedTuple, Sequence, Tuple

import torch
from mmdet.registry import MODELS
from mmdet.utils import register_all_modules
from mmengine.analysis import FlopAnalyzer
from mmengine.config import Config
from mmengine.utils import ProgressBar
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from projects.res2net.cli import (REPO_ROOT, init_random_weights, run_tool,
                                  tool_parser, write_json)
from projects.res2net.deploy import deploy
from projects.res2net.errors import UserError
from projects.res2net.speed import (add_device_arguments, add_timing_arguments,
                                    calibrate_batch_norms,
                                    check_timing_arguments, counterpart,
                                    describe_device, interleaved_seconds,
                                    medians)

RESNET, MMDET_R2, OURS, OURS_NCHW = ('resnet', 'mmdet-res2net', 'ours',
                                     'ours-nchw')
# What the table calls each, at a depth. ``ours-nchw`` is ours with its
# CPU inference in NCHW: the block alone, without the channels-last switch
# that ``cpu_channels_last`` makes for NCHW inputs.
LABELS = {
    RESNET: 'mmdet ResNet-{depth}',
    MMDET_R2: 'mmdet Res2Net-{depth}',
    OURS: 'Res2NetBackbone-{depth}',
    OURS_NCHW: 'Res2NetBackbone-{depth} (cpu_channels_last=False)',
}
MODES = ('nchw', 'channels_last', 'deploy', 'compiled')
INFERENCE_ONLY = ('deploy', 'compiled')
# Deployed outputs must equal the eager ones within this, relative to the
# largest output value.
TOLERANCE = 1e-4


def backbone_configs(depth: int) -> Dict[str, dict]:
    """The backbones compared, as configs, by role: ours with the detector
    configs' settings (``configs/_base_/res2net_backbones.py``) and its
    counterparts in mmdet."""
    base = Config.fromfile(
        str(REPO_ROOT / 'configs' / '_base_' / 'res2net_backbones.py'))
    ours = dict(base.res2net101_backbone, depth=depth, init_cfg=None)
    return {
        RESNET: counterpart(ours, 'resnet'),
        MMDET_R2: counterpart(ours, 'mmdet-res2net'),
        OURS: ours,
        OURS_NCHW: dict(ours, cpu_channels_last=False),
    }


def parse_args() -> argparse.Namespace:
    parser = tool_parser(
        "Time mmdet's ResNet and Res2Net and Res2NetBackbone (101 layers "
        'unless --depth), eager and in their deploy form, interleaved in one '
        'process',
        'python tools/analysis_tools/benchmark_backbone.py --size 512 512 '
        '--threads 2 --repeats 7')
    add_timing_arguments(
        parser, size=(512, 512), batch=1, repeats=7, warmup=2, what='runs')
    parser.add_argument(
        '--depth',
        type=int,
        choices=(50, 101, 152),
        default=101,
        help='the depth of every backbone (default: 101)')
    add_device_arguments(parser, amp_help='float16 autocast (CUDA only)')
    parser.add_argument(
        '--train',
        action='store_true',
        help='time forward + backward in training mode')
    parser.add_argument(
        '--modes',
        nargs='+',
        choices=MODES,
        default=('nchw', 'channels_last', 'deploy'),
        help='modes to time (default: nchw channels_last deploy; compiled '
        'compiles each model, which takes minutes on a small CPU)')
    parser.add_argument(
        '--profile',
        action='store_true',
        help='after timing, profile one run of each model with '
        'torch.profiler and print its time per kind of op (1x1 convs, '
        'other convs, BN, ReLU and adds, concatenation, copies, ...)')
    parser.add_argument('--out', help='also write the results to this JSON')
    return parser.parse_args()


class Row(NamedTuple):
    """One backbone in one mode, ready to run."""

    backbone: str
    mode: str
    run: Callable[[], object]
    macs: float


def _randomise(model: nn.Module, x: Tensor) -> nn.Module:
    """mmdet's random initialisation, BN statistics calibrated on ``x``
    (:func:`~projects.res2net.speed.calibrate_batch_norms`), and random BN
    affine terms (at their defaults folding would change less)."""
    init_random_weights(model)
    calibrate_batch_norms(model, lambda: model(x))
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, _BatchNorm):
                n = module.num_features
                module.weight.copy_(1 + torch.randn(n, generator=gen) / 10)
                module.bias.copy_(torch.randn(n, generator=gen) / 10)
    return model


def _outputs(model: nn.Module, x: Tensor) -> List[Tensor]:
    with torch.no_grad():
        return [o.float() for o in model(x)]


def _relative_error(got: Sequence[Tensor], want: Sequence[Tensor]) -> float:
    return max(((g - w).abs().max() / w.abs().max()).item()
               for g, w in zip(got, want))


def _step(model: nn.Module, x: Tensor, train: bool,
          autocast) -> Callable[[], object]:
    """One timed call: a forward (no grad), or forward + backward."""
    if train:

        def run():
            model.zero_grad(set_to_none=True)
            with autocast():
                loss = sum(o.float().mean() for o in model(x))
            loss.backward()

        return run

    def run():
        with torch.no_grad(), autocast():
            return model(x)

    return run


def build_rows(args: argparse.Namespace, device: str,
               x: Tensor) -> Tuple[List[Row], Dict[str, float]]:
    """Every backbone in every mode asked for, and each deployed model's
    largest relative difference to its eager outputs."""
    register_all_modules()
    autocast = (lambda: torch.autocast('cuda', dtype=torch.float16)) \
        if args.amp else nullcontext
    rows, errors = [], {}
    for name, cfg in backbone_configs(args.depth).items():
        reference = _randomise(MODELS.build(cfg).to(device), x)
        # (mmdet's ResNet.train returns None: no chained calls.)
        reference.eval()
        flops = FlopAnalyzer(reference, (x[:1], ))
        flops.unsupported_ops_warnings(False)
        flops.uncalled_modules_warnings(False)
        macs = flops.total() * len(x)
        reference.train(args.train)
        want = None if args.train else _outputs(reference, x)
        for mode in args.modes:
            if name == OURS_NCHW and (mode != 'nchw' or args.train):
                continue  # elsewhere the same computation as OURS
            model = deepcopy(reference)
            inputs = x
            if mode == 'channels_last':
                model = model.to(memory_format=torch.channels_last)
                inputs = x.contiguous(memory_format=torch.channels_last)
            elif mode in INFERENCE_ONLY:
                deploy(model, compile=mode == 'compiled')
                inputs = x.contiguous(memory_format=torch.channels_last)
                # Also compiles, where asked: outside the timed runs.
                label = LABELS[name].format(depth=args.depth)
                errors[f'{label} {mode}'] = _relative_error(
                    _outputs(model, inputs), want)
            rows.append(
                Row(name, mode, _step(model, inputs, args.train, autocast),
                    macs))
    return rows, errors


# The dense product whose speed is the "peak" the backbones are held to:
# a 1x1 conv of 1024 channels over a 64x64 channels-last map (the conv
# library's best case on a CPU, whose BLAS may use narrower vector units),
# timed in the same rounds as the backbones.
PEAK = 'matmul peak (1x1 conv, 1024 channels, 64x64)'


def peak_run(device: str) -> Tuple[Callable[[], object], float]:
    """The peak product as a call, and its FLOPs."""
    channels, side = 1024, 64
    x = torch.randn(
        1, channels, side, side,
        device=device).contiguous(memory_format=torch.channels_last)
    w = torch.randn(
        channels, channels, 1, 1,
        device=device).contiguous(memory_format=torch.channels_last)

    def run():
        with torch.no_grad():
            return torch.nn.functional.conv2d(x, w)

    return run, 2.0 * channels * channels * side * side


def time_rows(rows: List[Row], peak: Callable[[], object], device: str,
              repeats: int, warmup: int) -> Dict[Tuple[str, str], float]:
    """Median seconds of each row (and of the peak product, under
    ``(PEAK, '')``) over ``repeats`` interleaved rounds."""
    runs = {(row.backbone, row.mode): row.run for row in rows}
    runs[PEAK, ''] = peak
    bar = ProgressBar(repeats * len(runs), file=sys.stdout)
    times = interleaved_seconds(
        runs, device, repeats, warmup=warmup, on_step=bar.update)
    print()  # end the progress bar's line
    return medians(times)


# The kinds of op a profile is summed into, by the name of the aten op
# (first match wins); convolutions are split by kernel size.
OP_KINDS = (
    ('BN', ('batch_norm', )),
    ('ReLU, add, mul', ('relu', 'add', 'mul', 'threshold')),
    ('concatenation', ('cat', )),
    ('copies', ('copy_', 'contiguous', 'clone', 'to_dense', 'reorder')),
    ('pooling', ('pool', )),
)
CONV_OPS = ('conv', )  # in the name: mkldnn, cudnn, slow_conv2d, backward


def _op_kind(name: str, shapes: list) -> str:
    """The kind of a profiled op, for :func:`profile_rows`."""
    if any(word in name for word in CONV_OPS):
        # (input, weight, ...); a backward gets (grad, input, weight, ...)
        at = 2 if 'backward' in name else 1
        weight = shapes[at] if len(shapes) > at else []
        if len(weight) == 4 and weight[2:] == [1, 1]:
            return '1x1 conv'
        return f'{weight[2]}x{weight[3]} conv' if len(weight) == 4 else 'conv'
    for kind, words in OP_KINDS:
        if any(word in name for word in words):
            return kind
    return 'other'


def profile_rows(rows: List[Row], device: str,
                 depth: int) -> Dict[str, Dict[str, float]]:
    """Milliseconds of self time per kind of op, for one run of each row.

    The self time of the leaf aten ops, summed by :func:`_op_kind`: where a
    network spends its time, e.g. Res2Net's many small 3x3 convs against
    ResNet's few wide ones. One profiled run, so a rough split; the timed
    medians above are the measurement.
    """
    from torch.profiler import ProfilerActivity, profile
    activities = [ProfilerActivity.CPU
                  ] + ([ProfilerActivity.CUDA] if device == 'cuda' else [])
    found = {}
    for row in rows:
        with profile(activities=activities, record_shapes=True) as prof:
            row.run()
        kinds: Dict[str, float] = {}
        for event in prof.key_averages(group_by_input_shape=True):
            ms = (event.self_device_time_total if device == 'cuda' else
                  event.self_cpu_time_total) / 1e3  # from microseconds
            if ms > 0:
                kind = _op_kind(event.key, event.input_shapes)
                kinds[kind] = kinds.get(kind, 0.0) + ms
        label = LABELS[row.backbone].format(depth=depth)
        found[f'{label} {row.mode}'] = kinds
    return found


def profile_table(profiles: Dict[str, Dict[str, float]]) -> str:
    """The profiles as a markdown table: one line per model, one column
    per kind of op, in ms."""
    kinds = sorted({k
                    for p in profiles.values()
                    for k in p},
                   key=lambda k: -max(p.get(k, 0) for p in profiles.values()))
    lines = [
        '| model | ' + ' | '.join(kinds) + ' | total |',
        '|---' * (len(kinds) + 2) + '|'
    ]
    for name, kinds_ms in profiles.items():
        cells = [f'{kinds_ms.get(k, 0):.1f}' for k in kinds]
        lines.append(f'| {name} | ' + ' | '.join(cells) +
                     f' | {sum(kinds_ms.values()):.1f} |')
    return '\n'.join(lines)


def table(rows: List[Row], seconds_of: Dict[Tuple[str, str], float],
          peak: float, train: bool, depth: int) -> Tuple[str, List[dict]]:
    """The markdown table, and its rows as dicts."""
    lines = [
        f'| backbone | mode | median ms | vs ResNet-{depth} | '
        f'vs mmdet Res2Net-{depth} | vs mmdet Res2Net-{depth} NCHW | '
        'GFLOP/s | of peak |', '|---' * 8 + '|'
    ]
    results = []
    for row in rows:
        seconds = seconds_of[row.backbone, row.mode]
        flops = 2 * row.macs * (3 if train else 1)  # backward: about 2x
        result = dict(
            backbone=LABELS[row.backbone].format(depth=depth),
            mode=row.mode,
            median_ms=1000 * seconds,
            vs_resnet=seconds / seconds_of[RESNET, row.mode],
            vs_mmdet_res2net=seconds / seconds_of[MMDET_R2, row.mode],
            vs_mmdet_res2net_nchw=seconds / seconds_of.get(
                (MMDET_R2, 'nchw'), float('nan')),
            gflops_per_s=flops / seconds / 1e9)
        result['of_peak'] = result['gflops_per_s'] / peak
        results.append(result)
        lines.append(
            f'| {result["backbone"]} | {row.mode} | '
            f'{result["median_ms"]:.1f} | '
            f'{result["vs_resnet"]:.2f} | {result["vs_mmdet_res2net"]:.2f} | '
            f'{result["vs_mmdet_res2net_nchw"]:.2f} | '
            f'{result["gflops_per_s"]:.1f} | {100 * result["of_peak"]:.0f}% |')
    return '\n'.join(lines), results


def main() -> None:
    args = parse_args()
    device = check_timing_arguments(args)
    if args.train and set(args.modes) & set(INFERENCE_ONLY):
        raise UserError('--train times training: the deploy and compiled '
                        'modes are for inference; pass --modes nchw '
                        'channels_last')
    torch.manual_seed(0)
    height, width = args.size
    x = torch.randn(args.batch, 3, height, width, device=device)

    rows, errors = build_rows(args, device, x)
    for key, error in errors.items():
        if error > TOLERANCE:
            raise RuntimeError(f'{key}: outputs differ from eager by '
                               f'{error:.1e} (relative), more than '
                               f'{TOLERANCE:.0e}')
    peak, peak_flops = peak_run(device)
    seconds = time_rows(rows, peak, device, args.repeats, args.warmup)
    peak = peak_flops / seconds[PEAK, ''] / 1e9
    text, results = table(rows, seconds, peak, args.train, args.depth)

    where = describe_device(device)
    what = 'forward + backward, train mode' if args.train else \
        'forward, eval mode'
    print(f'{what}; input {args.batch}x3x{height}x{width}; {where}'
          f'{", float16 autocast" if args.amp else ""}; median of '
          f'{args.repeats} interleaved runs; {PEAK}: {peak:.0f} GFLOP/s')
    print(text)
    for key, error in errors.items():
        print(f'{key}: outputs within {error:.1e} of eager NCHW (relative)')
    profiles = None
    if args.profile:
        profiles = profile_rows(rows, device, args.depth)
        print('time per kind of op, ms (self time of one profiled run):')
        print(profile_table(profiles))
    if args.out:
        write_json(
            args.out,
            dict(
                device=where,
                train=args.train,
                amp=args.amp,
                input_shape=[args.batch, 3, height, width],
                repeats=args.repeats,
                matmul_peak_gflops_per_s=peak,
                results=results,
                deploy_relative_error=errors,
                profile_ms=profiles))
        print(f'written to {args.out}')


if __name__ == '__main__':
    run_tool(main)
