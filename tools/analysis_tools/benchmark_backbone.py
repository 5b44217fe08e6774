# Copyright (c) Res2Net-MMDet contributors. All rights reserved.
"""Backbone latency: ours against the networks they replace.

The entry point: what is measured, and how, is in
``projects/res2net/analysis/benchmark_backbone.py``.

Example:
    python tools/analysis_tools/benchmark_backbone.py --size 512 512 \\
        --threads 2 --repeats 7 --out backbone_speed.json
    python tools/analysis_tools/benchmark_backbone.py --family dla \\
        --size 512 512 --threads 2 --repeats 7
    python tools/analysis_tools/benchmark_backbone.py --depth 50 \\
        --size 800 1344 --with-neck --modes compiled --precision int8 bf16
"""
import argparse

from projects.res2net.analysis.benchmark_backbone import (CHAIN, FAMILIES,
                                                          LOW_PRECISIONS,
                                                          MODES, PEAK,
                                                          benchmark_backbones,
                                                          lineup, profile_runs,
                                                          profile_table)
from projects.res2net.analysis.speed import (add_device_arguments,
                                             add_timing_arguments,
                                             check_timing_arguments,
                                             describe_device)
from projects.res2net.engine.cli import run_tool, tool_parser
from projects.res2net.engine.fileio import write_json
from projects.res2net.engine.quantize import planned_precisions


def parse_args() -> argparse.Namespace:
    parser = tool_parser(
        "Time ours against the backbones they replace (mmdet's ResNet and "
        'Res2Net against Res2NetBackbone, 101 layers unless --depth; or '
        'DLA-60 and ResNet-50 against Res2NetDLA), eager and in their deploy '
        'form, interleaved in one process',
        'python tools/analysis_tools/benchmark_backbone.py --size 512 512 '
        '--threads 2 --repeats 7')
    add_timing_arguments(
        parser, size=(512, 512), batch=1, repeats=7, warmup=2, what='runs')
    parser.add_argument(
        '--family',
        choices=FAMILIES,
        default='resnet',
        help='resnet: Res2NetBackbone against mmdet\'s ResNet and Res2Net; '
        'dla: Res2Net-DLA-60 and Res2NeXt-DLA-60 against DLA-60 (the same '
        'network with its plain bottleneck) and ResNet-50 (default: resnet)')
    parser.add_argument(
        '--depth',
        type=int,
        choices=(50, 101, 152),
        help='the depth of every backbone of the resnet family (default: '
        '101)')
    add_device_arguments(parser, amp_help='float16 autocast (CUDA only)')
    parser.add_argument(
        '--train',
        action='store_true',
        help='time forward + backward in training mode')
    parser.add_argument(
        '--modes',
        nargs='+',
        choices=[m for m in MODES if m not in LOW_PRECISIONS],
        default=('nchw', 'channels_last', 'deploy'),
        help='modes to time (default: nchw channels_last deploy; compiled '
        'compiles each model, which takes minutes on a small CPU)')
    parser.add_argument(
        '--precision',
        nargs='+',
        choices=LOW_PRECISIONS,
        default=(),
        help='also time the deploy form with its weights in these '
        'precisions (x86 CPU; compiled, so the compiled mode is timed too, '
        'and each row is also divided by it), and each precision\'s own '
        'peak: a chain of 1x1 convs in it')
    parser.add_argument(
        '--force-precision',
        action='store_true',
        help='time bf16 on a CPU without bf16 instructions (emulated, slow)')
    parser.add_argument(
        '--with-neck',
        action='store_true',
        help='each backbone followed by an FPN as in the detector configs: '
        'the dense part of a detector')
    parser.add_argument(
        '--profile',
        action='store_true',
        help='after timing, profile one run of each model with '
        'torch.profiler and print its time per kind of op (1x1 convs, '
        'other convs, BN, ReLU and adds, concatenation, copies, ...)')
    parser.add_argument('--out', help='also write the results to this JSON')
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    device = check_timing_arguments(args)
    height, width = args.size
    backbones = lineup(args.family, args.depth)
    modes = list(args.modes)
    for precision in planned_precisions(
            args.precision, device=device, force=args.force_precision):
        if precision != 'fp32':
            modes += ['compiled'] * ('compiled' not in modes) + [precision]
    found = benchmark_backbones(
        device=device,
        batch=args.batch,
        size=args.size,
        backbones=backbones,
        modes=modes,
        train=args.train,
        amp=args.amp,
        repeats=args.repeats,
        warmup=args.warmup,
        neck=args.with_neck)

    where = describe_device(device)
    what = 'forward + backward, train mode' if args.train else \
        'forward, eval mode'
    if args.with_neck:
        what += ', backbone + FPN'
    print(f'{what}; input {args.batch}x3x{height}x{width}; {where}'
          f'{", float16 autocast" if args.amp else ""}; median of '
          f'{args.repeats} interleaved runs; {PEAK}: '
          f'{found.peak_gflops:.0f} GFLOP/s')
    if found.chain_gops:
        rates = ', '.join(f'{p} {g:.0f}' for p, g in found.chain_gops.items())
        print(f'{CHAIN}, GFLOP/s (int8: GOP/s): {rates}; the low-precision '
              'rows\' share of peak is of their own precision\'s chain')
    print(found.table)
    for key, error in found.errors.items():
        print(f'{key}: outputs within {error:.1e} of eager NCHW (relative)')
    for key, cosine in found.cosines.items():
        print(f'{key}: outputs at cosine {cosine:.4f} to eager NCHW (the '
              'least of its levels)')
    profiles = None
    if args.profile:
        profiles = profile_runs(found.runs, device, backbones.labels)
        print('time per kind of op, ms (self time of one profiled run):')
        print(profile_table(profiles))
    if args.out:
        write_json(
            args.out,
            dict(
                device=where,
                family=args.family,
                train=args.train,
                amp=args.amp,
                input_shape=[args.batch, 3, height, width],
                repeats=args.repeats,
                with_neck=args.with_neck,
                matmul_peak_gflops_per_s=found.peak_gflops,
                chain_peak_gops_per_s=found.chain_gops,
                results=found.results,
                deploy_relative_error=found.errors,
                low_precision_cosine=found.cosines,
                profile_ms=profiles))
        print(f'written to {args.out}')


if __name__ == '__main__':
    run_tool(main)
