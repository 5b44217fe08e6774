# Copyright (c) Res2Net-MMDet contributors. All rights reserved.
"""Write the int8 program of a trained detector (backbone, neck and a
one-stage head's convs), for ``tools/test.py`` and
``tools/analysis_tools/benchmark.py --precision int8 --int8-program FILE``.

Example:
    python tools/deployment/quantize.py configs/faster_rcnn_r2_101_fpn_2x.py \\
        work_dirs/faster/epoch_24.pth --calib-images 32
"""
import argparse

from projects.res2net.engine.cli import (add_cfg_options, check_data,
                                         load_config, require_file, run_tool,
                                         tool_parser)
from projects.res2net.engine.quantize import (default_program_path,
                                              write_int8_program)
from projects.res2net.models.precision import cpu_note


def parse_args() -> argparse.Namespace:
    parser = tool_parser(
        'Calibrate a trained detector on its train images and write the '
        'int8 program of its backbone and neck (and a one-stage head\'s '
        'convs; PT2E, x86 CPUs)', 'python tools/deployment/quantize.py '
        'configs/faster_rcnn_r2_101_fpn_2x.py work_dirs/faster/epoch_24.pth')
    parser.add_argument('config', help='config file path')
    parser.add_argument('checkpoint', help='the trained checkpoint')
    parser.add_argument(
        '--calib-images',
        type=int,
        default=32,
        help='calibrate on the first N train images (default 32)')
    parser.add_argument(
        '--out',
        help='the program file (default: beside the checkpoint, '
        'CHECKPOINT.int8.pt2)')
    add_cfg_options(parser)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    cfg = load_config(args.config, args.cfg_options)
    require_file(args.checkpoint, 'checkpoint',
                 'pass the .pth that tools/train.py wrote for this config')
    check_data(cfg, ['train_dataloader'])
    note = cpu_note('int8')
    if note:
        print(f'note: {note}', flush=True)
    out = args.out or default_program_path(args.checkpoint)
    record, seconds = write_int8_program(
        cfg,
        args.config,
        args.checkpoint,
        calib_images=args.calib_images,
        out=out)
    print(f'int8 program written to {out} in {seconds:.0f} s (calibrated '
          f'on {record["calib_images"]} images of {record["calib_data"]})')


if __name__ == '__main__':
    run_tool(main)
