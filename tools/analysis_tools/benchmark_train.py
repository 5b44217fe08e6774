# Copyright (c) Res2Net-MMDet contributors. All rights reserved.
"""Training-step speed and peak memory of a Res2Net detector, against the
same detector on mmdet's own backbones.

The entry point: what is measured, and how, is in
``projects/res2net/analysis/benchmark_train.py``. The tool runs itself
again, in a fresh process per model, with ``--memory-of NAME`` for the peak
memory.

Example:
    python tools/analysis_tools/benchmark_train.py \\
        configs/faster_rcnn_r2_101_fpn_2x.py --size 320 320 --batch 2
"""
import argparse
import json
import sys

from projects.res2net.analysis.benchmark_train import (OURS,
                                                       configure_training,
                                                       memory_in_child,
                                                       model_configs,
                                                       peak_memory_alone,
                                                       synthetic_batch,
                                                       time_training_steps,
                                                       train_table)
from projects.res2net.analysis.speed import (COUNTERPARTS,
                                             add_device_arguments,
                                             add_timing_arguments,
                                             check_timing_arguments,
                                             describe_device)
from projects.res2net.engine.cli import (add_cfg_options, load_config,
                                         run_tool, tool_parser)
from projects.res2net.engine.fileio import write_json


def parse_args(argv=None) -> argparse.Namespace:
    parser = tool_parser(
        'Time the training step (forward, backward, optimizer step) of a '
        "Res2Net detector against the same detector on mmdet's Res2Net and "
        'ResNet, interleaved; peak memory of each',
        'python tools/analysis_tools/benchmark_train.py '
        'configs/faster_rcnn_r2_101_fpn_2x.py --size 320 320 --batch 2')
    parser.add_argument(
        'config', help='a config whose backbone is '
        'Res2NetBackbone')
    add_timing_arguments(
        parser, size=(320, 320), batch=2, repeats=7, warmup=2, what='steps')
    parser.add_argument(
        '--against',
        nargs='*',
        choices=COUNTERPARTS,
        default=list(COUNTERPARTS),
        help='the backbones to compare with (default: both)')
    parser.add_argument(
        '--with-cp',
        action='store_true',
        help='also time ours with activation checkpointing (with_cp=True)')
    add_device_arguments(
        parser,
        amp_help="mixed precision (mmengine's AmpOptimWrapper; CUDA only)")
    parser.add_argument(
        '--no-memory',
        action='store_true',
        help='skip the peak-memory runs (one process per model)')
    parser.add_argument('--out', help='also write the results to this JSON')
    add_cfg_options(parser)
    # Internal: measure one model's peak memory in this (fresh) process.
    parser.add_argument('--memory-of', help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main() -> None:
    args = parse_args()
    device = check_timing_arguments(args)
    cfg = configure_training(
        load_config(args.config, args.cfg_options), amp=args.amp)
    # Also checks the backbone's type.
    configs = model_configs(cfg, with_cp=args.with_cp, against=args.against)
    batch = synthetic_batch(
        cfg, batch=args.batch, size=args.size, device=device)

    if args.memory_of:
        memory, kind = peak_memory_alone(
            configs[args.memory_of], device, batch, steps=args.warmup + 2)
        print(json.dumps(dict(peak_memory_mb=memory, memory_kind=kind)))
        return

    seconds = time_training_steps(
        configs, device, batch, repeats=args.repeats, warmup=args.warmup)
    memory = {} if args.no_memory else {
        name: memory_in_child(name, sys.argv[1:])
        for name in seconds
    }
    text, results = train_table(seconds, memory)

    where = describe_device(device)
    kind = memory[OURS][1] if memory else 'not measured'
    print(f'{args.config}: train_step (preprocess, forward, backward, '
          f'optimizer step), {args.batch} images of {args.size[0]}x'
          f'{args.size[1]}, random weights; {where}'
          f'{", AMP" if args.amp else ""}; median of {args.repeats} '
          f'interleaved steps; memory: {kind}')
    print(text)
    if args.out:
        write_json(
            args.out,
            dict(
                config=args.config,
                device=where,
                amp=args.amp,
                batch=args.batch,
                size=list(args.size),
                repeats=args.repeats,
                memory_kind=kind,
                results=results))
        print(f'written to {args.out}')


if __name__ == '__main__':
    run_tool(main)
