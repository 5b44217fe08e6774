# Copyright (c) Res2Net-MMDet contributors. All rights reserved.
"""Inference speed (fps, ms per image) and peak memory of a detector.

The entry point: what is measured, and how, is in
``projects/res2net/analysis/benchmark_inference.py``. The results go to
``WORK_DIR/benchmark.json``.

mmdet 3.3's flags are taken with their meaning: ``--checkpoint``,
``--max-iter`` (warm-up included), ``--num-warmup``, ``--repeat-num``,
``--log-interval``, ``--launcher`` (one process), ``--task dataloader`` and
``--task dataset`` (mmdet's own data benchmarks, on ``--dataset-type``).
Without ``--task`` the detector is timed (mmdet's default is the
dataloader).

Example:
    python tools/analysis_tools/benchmark.py \
        configs/faster_rcnn_r2_101_fpn_2x.py faster_r2_101.pth --fuse-conv-bn
    python tools/analysis_tools/benchmark.py \
        configs/faster_rcnn_r2_101_fpn_2x.py --checkpoint faster_r2_101.pth \
        --task inference --repeat-num 3 --max-iter 205 --log-interval 50
"""
import argparse
import os.path as osp
from typing import Optional

from projects.res2net.analysis.benchmark_inference import (SPLITS, TASKS,
                                                           benchmark_detector,
                                                           benchmark_loading,
                                                           check_one_process,
                                                           timed_images,
                                                           work_dir_of)
from projects.res2net.analysis.speed import (COUNTERPARTS,
                                             add_device_arguments, device_of)
from projects.res2net.engine.cli import (add_cfg_options, check_data,
                                         load_config, parse_cli, require_file,
                                         run_tool, tool_parser)
from projects.res2net.engine.dist import LAUNCHERS
from projects.res2net.engine.fileio import write_json
from projects.res2net.engine.quantize import (add_precision_arguments,
                                              plan_precisions)
from projects.res2net.errors import UserError
from projects.res2net.paths import BENCHMARK_JSON

# Timed images of the detector without --num-images or --max-iter.
NUM_IMAGES = 200
# mmdet's defaults for its data tasks: batches (warm-up included), and
# a progress line every so many.
DATA_MAX_ITER, DATA_LOG_INTERVAL = 2000, 50
# The options that time the detector: none of them fits a data task.
INFERENCE_ONLY = ('checkpoint', 'checkpoint_option', 'num_images',
                  'fuse_conv_bn', 'channels_last', 'deploy', 'compile',
                  'against_backbone', 'precision', 'int8_program',
                  'calib_images', 'force_precision', 'device', 'amp')


def parse_args() -> argparse.Namespace:
    parser = tool_parser(
        'Measure inference speed (fps, ms per image) and peak '
        'memory of a detector at batch 1; writes WORK_DIR/benchmark.json',
        'python tools/analysis_tools/benchmark.py '
        'configs/faster_rcnn_r2_101_fpn_2x.py faster_r2_101.pth '
        '--fuse-conv-bn --num-images 200')
    parser.add_argument('config', help='config file path')
    parser.add_argument(
        'checkpoint',
        nargs='?',
        help='checkpoint file (default: none, random weights)')
    parser.add_argument(
        '--checkpoint',
        dest='checkpoint_option',
        metavar='CHECKPOINT',
        help='the same, as mmdet spells it')
    parser.add_argument(
        '--task',
        choices=TASKS,
        default='inference',
        help='inference: time the detector (default); dataloader, dataset: '
        'time the data alone with mmdet\'s own benchmarks (they need '
        'psutil)')
    parser.add_argument(
        '--work-dir',
        help='the dir to write benchmark.json to (default: the config\'s '
        'work_dir, else ./work_dirs/<config name>); a data task writes its '
        'log there, benchmark.log, as mmdet does')
    parser.add_argument(
        '--num-images',
        type=int,
        help=f'images to time, after the warm-up (default: {NUM_IMAGES})')
    parser.add_argument(
        '--max-iter',
        type=int,
        help='mmdet\'s count: images (a data task: batches) run, warm-up '
        f'included (default: {NUM_IMAGES} + warm-up; a data task '
        f'{DATA_MAX_ITER}); not with --num-images')
    parser.add_argument(
        '--warmup',
        '--num-warmup',
        type=int,
        default=5,
        help='images run before timing starts (default: 5)')
    parser.add_argument(
        '--repeat-num',
        type=int,
        default=1,
        help='measurements, each with its warm-up; fps over them all and '
        'each one\'s (default: 1)')
    parser.add_argument(
        '--log-interval',
        type=int,
        help='print mmdet\'s progress line every N images instead of the '
        f'bar (a data task: default {DATA_LOG_INTERVAL})')
    parser.add_argument(
        '--dataset-type',
        choices=SPLITS,
        default='test',
        help='the dataloader a data task reads (default: test); the '
        'detector is timed on the test dataloader')
    parser.add_argument(
        '--launcher',
        choices=LAUNCHERS,
        default='none',
        help='job launcher, as in mmdet\'s docs (python -m '
        'torch.distributed.launch --nproc_per_node=1 ...): one process')
    # torch.distributed.launch passes --local-rank (torch >= 2.0).
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    parser.add_argument(
        '--fuse-conv-bn',
        action='store_true',
        help='fold BatchNorm layers into the convs before them')
    parser.add_argument(
        '--channels-last',
        action='store_true',
        help='run the model and its inputs in torch.channels_last')
    parser.add_argument(
        '--deploy',
        action='store_true',
        help='the deploy form: --fuse-conv-bn and --channels-last')
    parser.add_argument(
        '--compile',
        action='store_true',
        help='compile the backbone and neck with torch.compile (inductor, '
        'freezing); takes minutes on a small CPU')
    parser.add_argument(
        '--against-backbone',
        choices=COUNTERPARTS,
        help='also time the same detector with mmdet\'s ResNet (resnet) or '
        'mmdet\'s Res2Net (mmdet-res2net) as its backbone, interleaved, and '
        'print the fps ratio')
    add_precision_arguments(parser, several=True, what='time')
    add_device_arguments(parser, amp_help='float16 autocast (CUDA only)')
    add_cfg_options(parser)
    args = parse_cli(parser)
    # The options given that only the detector's timing reads.
    args.inference_options = [
        'CHECKPOINT' if dest == 'checkpoint' else '--' +
        dest.replace('_option', '').replace('_', '-')
        for dest in INFERENCE_ONLY
        if getattr(args, dest) != parser.get_default(dest)
    ]
    return args


def benchmark_data(args: argparse.Namespace) -> None:
    """mmdet's ``--task dataloader``/``dataset``: the data alone.

    Raises:
        UserError: An option of the detector's timing, or bad data.
    """
    if args.inference_options:
        raise UserError(f'{", ".join(args.inference_options)}: the options '
                        f'of the detector\'s timing; --task {args.task} '
                        'times the data alone, drop them')
    timed_images(
        num_images=None,
        max_iter=args.max_iter,
        warmup=args.warmup,
        repeat_num=args.repeat_num,
        log_interval=args.log_interval)
    cfg = load_config(args.config, args.cfg_options)
    check_data(cfg, [f'{args.dataset_type}_dataloader'])
    log_file: Optional[str] = None
    if args.work_dir:
        log_file = osp.join(args.work_dir, 'benchmark.log')
    result = benchmark_loading(
        cfg,
        task=args.task,
        split=args.dataset_type,
        max_iter=DATA_MAX_ITER if args.max_iter is None else args.max_iter,
        warmup=args.warmup,
        log_interval=args.log_interval or DATA_LOG_INTERVAL,
        repeat_num=args.repeat_num,
        log_file=log_file)
    unit = 'batches' if args.task == 'dataloader' else 'images'
    print(f'{args.config}: {args.task} of {args.dataset_type}_dataloader: '
          f'{result["avg_fps"]:.1f} {unit}/s (mean of '
          f'{len(result["fps_list"])} measurement(s))' +
          (f'; log written to {log_file}' if log_file else ''))


def main() -> None:
    args = parse_args()
    if args.checkpoint is not None and args.checkpoint_option is not None:
        raise UserError('CHECKPOINT and --checkpoint: pass the checkpoint '
                        'once')
    check_one_process(args.launcher)
    if args.task != 'inference':
        benchmark_data(args)
        return
    if args.dataset_type != 'test':
        raise UserError(f'--dataset-type {args.dataset_type}: the detector '
                        'is timed on the test dataloader (as mmdet times '
                        'it); --dataset-type is for --task dataloader or '
                        'dataset')
    args.checkpoint = args.checkpoint or args.checkpoint_option
    args.num_images = timed_images(
        num_images=args.num_images,
        max_iter=args.max_iter,
        warmup=args.warmup,
        repeat_num=args.repeat_num,
        log_interval=args.log_interval,
        default=NUM_IMAGES)
    cfg = load_config(args.config, args.cfg_options)
    if args.checkpoint is not None and '://' not in args.checkpoint:
        require_file(
            args.checkpoint, 'checkpoint',
            'pass the .pth that tools/train.py wrote, or none to time '
            'random weights')
    device = device_of(args)
    check_data(cfg, ['test_dataloader'])
    precisions = plan_precisions(
        args, cfg, device=device, checkpoint=args.checkpoint)

    fuse = args.fuse_conv_bn or args.deploy or bool(precisions)
    channels_last = args.channels_last or args.deploy or bool(precisions)
    result, report = benchmark_detector(
        cfg,
        config=args.config,
        checkpoint=args.checkpoint,
        device=device,
        num_images=args.num_images,
        warmup=args.warmup,
        fuse=fuse,
        channels_last=channels_last,
        compile=args.compile,
        amp=args.amp,
        against=args.against_backbone,
        precisions=precisions,
        int8_program=args.int8_program,
        calib_images=args.calib_images,
        repeat_num=args.repeat_num,
        log_interval=args.log_interval)
    path = osp.join(
        work_dir_of(args.config, cfg, args.work_dir), BENCHMARK_JSON)
    write_json(path, result)

    memory, against = result['peak_memory_mb'], result['against']
    forms = (('fused conv-bn', fuse), ('channels-last', channels_last),
             ('compiled', result['compile']), ('float16 autocast', args.amp))
    options = [name for name, on in forms if on]
    print(f'{args.config}: {result["fps"]:.2f} fps, '
          f'{result["ms_per_image"]:.1f} '
          f'ms/image over {args.num_images} images after {args.warmup} '
          f'warm-up ({result["hardware"]}, batch 1{", " if options else ""}'
          f'{", ".join(options)}); peak memory {memory:.1f} MB '
          f'({result["memory_kind"]}'
          f'{", both detectors" if against else ""}); '
          f'{result["shape_note"]}; ' +
          (f'random weights (seed {result["seed"]}), no checkpoint' if args.
           checkpoint is None else f'weights {args.checkpoint}'))
    if args.repeat_num > 1:
        print(f'fps of each of the {args.repeat_num} measurements: ' +
              ', '.join(f'{fps:.2f}' for fps in result['fps_list']))
    if report.summary():
        print(report.summary())
    for precision, form in result['precisions'].items():
        print(f'{precision}: {form["fps"]:.2f} fps, '
              f'{form["ms_per_image"]:.1f} ms/image, fps ratio to '
              f'{precisions[0]}: {form["fps_ratio"]:.2f}; '
              f'{form["compiles"]} graph(s) compiled; {form["form"]}')
    if against:
        print(f'against the same detector with {args.against_backbone} '
              f'(random weights), interleaved: {against["fps"]:.2f} fps, '
              f'{against["ms_per_image"]:.1f} ms/image; fps ratio ours / '
              f'{args.against_backbone}: {against["fps_ratio"]:.2f}')
    print(f'written to {path}')


if __name__ == '__main__':
    run_tool(main)
