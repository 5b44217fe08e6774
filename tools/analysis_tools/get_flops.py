# Copyright (c) Res2Net-MMDet contributors. All rights reserved.
"""Params and FLOPs of a detector and of its backbone at one input shape.

The entry point: how they are counted, and the numbers measured with it
against the published ones, are in ``projects/res2net/analysis/flops.py``.

Example:
    python tools/analysis_tools/get_flops.py \
        configs/faster_rcnn_r2_101_fpn_2x.py
    python tools/analysis_tools/get_flops.py \
        configs/demo/faster_rcnn_r2_50_fpn_demo.py --shape 128 --out f.json
"""
import argparse

from projects.res2net.analysis.flops import (CONVENTION, count_flops,
                                             flops_table, image_shape)
from projects.res2net.engine.cli import (add_cfg_options, load_config,
                                         run_tool, tool_parser)
from projects.res2net.engine.fileio import write_json


def parse_args() -> argparse.Namespace:
    parser = tool_parser(
        'Print params (M) and FLOPs (G) of a detector and of its '
        'backbone at one input shape, as a markdown table',
        'python tools/analysis_tools/get_flops.py '
        'configs/faster_rcnn_r2_101_fpn_2x.py --shape 800 1280')
    parser.add_argument('config', help='config file path')
    parser.add_argument(
        '--shape',
        type=int,
        nargs='+',
        default=[800, 1280],
        metavar='N',
        help='input image size: H W, or one number for a square '
        '(default: 800 1280, a 1280x800 image as in the model zoo)')
    parser.add_argument(
        '--out', help='also write the numbers to this JSON file')
    add_cfg_options(parser)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    height, width = image_shape(args.shape)
    cfg = load_config(args.config, args.cfg_options)
    result = count_flops(cfg, height, width)
    result['config'] = args.config
    print(flops_table(result))
    padded = result['input_shape'][2:]
    if padded != [height, width]:
        print(f'the data preprocessor padded {height}x{width} to '
              f'{padded[0]}x{padded[1]}')
    if result['num_proposals'] is not None:
        print(f'RoI head counted on {result["num_proposals"]} proposals')
    print(f'{CONVENTION}; adds, activations, max pooling and mmcv\'s '
          'compiled ops (NMS, RoIAlign, deformable conv) count zero')
    if args.out:
        write_json(args.out, result)
        print(f'written to {args.out}')


if __name__ == '__main__':
    run_tool(main)
