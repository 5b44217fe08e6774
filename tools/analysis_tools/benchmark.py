# Copyright (c) Res2Net-MMDet contributors. All rights reserved.
"""Inference speed (fps, ms per image) and peak memory of a detector.

The entry point: what is measured, and how, is in
``projects/res2net/analysis/benchmark_inference.py``. The results go to
``WORK_DIR/benchmark.json``.

Example:
    python tools/analysis_tools/benchmark.py \
        configs/faster_rcnn_r2_101_fpn_2x.py faster_r2_101.pth --fuse-conv-bn
"""
import argparse
import os.path as osp

from projects.res2net.analysis.benchmark_inference import (benchmark_detector,
                                                           work_dir_of)
from projects.res2net.analysis.speed import (COUNTERPARTS,
                                             add_device_arguments, device_of)
from projects.res2net.engine.cli import (add_cfg_options, check_data,
                                         load_config, require_file, run_tool,
                                         tool_parser)
from projects.res2net.engine.fileio import write_json
from projects.res2net.engine.quantize import (add_precision_arguments,
                                              plan_precisions)
from projects.res2net.errors import UserError
from projects.res2net.paths import BENCHMARK_JSON


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
        '--work-dir',
        help='the dir to write benchmark.json to (default: the config\'s '
        'work_dir, else ./work_dirs/<config name>)')
    parser.add_argument(
        '--num-images',
        type=int,
        default=200,
        help='images to time, after the warm-up (default: 200)')
    parser.add_argument(
        '--warmup',
        type=int,
        default=5,
        help='images run before timing starts (default: 5)')
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
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    if args.num_images < 1 or args.warmup < 0:
        raise UserError('--num-images must be at least 1 and --warmup at '
                        f'least 0 (got {args.num_images} and {args.warmup})')
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
        calib_images=args.calib_images)
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
