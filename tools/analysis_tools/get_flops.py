# Copyright (c) Res2Net-MMDet contributors. All rights reserved.
"""Params and FLOPs of a detector and of its backbone at one input shape.

The entry point: how they are counted, and the numbers measured with it
against the published ones, are in ``projects/res2net/analysis/flops.py``.

mmdet's flags are taken: ``--shape`` (its docs') and ``--num-images``
(its 3.3 tool's: the mean over the first N validation images).

Example:
    python tools/analysis_tools/get_flops.py \
        configs/faster_rcnn_r2_101_fpn_2x.py
    python tools/analysis_tools/get_flops.py \
        configs/demo/faster_rcnn_r2_50_fpn_demo.py --shape 128 --out f.json
    python tools/analysis_tools/get_flops.py \
        configs/faster_rcnn_r2_101_fpn_2x.py --num-images 100
"""
import argparse

from projects.res2net.analysis.flops import (CONVENTION, count_flops,
                                             count_flops_on_data, flops_table,
                                             image_shape)
from projects.res2net.engine.cli import (add_cfg_options, check_data,
                                         load_config, run_tool, tool_parser)
from projects.res2net.engine.fileio import write_json
from projects.res2net.errors import UserError

# A fake image of this size (H W) unless asked otherwise: mmdet's docs'
# default input, 1280x800 as in the model zoo.
DEFAULT_SHAPE = [800, 1280]


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
        metavar='N',
        help='input image size: H W, or one number for a square '
        '(default: 800 1280, a 1280x800 image as in the model zoo)')
    parser.add_argument(
        '--num-images',
        type=int,
        metavar='N',
        help='count on the first N images of val_dataloader instead, each '
        'at its test-pipeline size, and give the mean, as mmdet 3.3\'s '
        'get_flops.py does (its default there: 100); not with --shape')
    parser.add_argument(
        '--out', help='also write the numbers to this JSON file')
    add_cfg_options(parser)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    if args.shape is not None and args.num_images is not None:
        raise UserError('--shape and --num-images: count on a fake image of '
                        'one shape or on the validation images, not both')
    if args.num_images is None:
        height, width = image_shape(args.shape or DEFAULT_SHAPE)
    elif args.num_images < 1:
        raise UserError(f'--num-images {args.num_images}: count on at least '
                        'one image')
    cfg = load_config(args.config, args.cfg_options)
    if args.num_images is None:
        result = count_flops(cfg, height, width)
    else:
        check_data(cfg, ['val_dataloader'])
        result = count_flops_on_data(cfg, args.num_images)
    result['config'] = args.config
    print(flops_table(result))
    proposals = result['num_proposals']
    if args.num_images is None:
        padded = result['input_shape'][2:]
        if padded != [height, width]:
            print(f'the data preprocessor padded {height}x{width} to '
                  f'{padded[0]}x{padded[1]}')
    else:
        shapes = sorted(
            {'x'.join(map(str, s))
             for s in result['input_shapes']})
        print(f'FLOPs: the mean over {result["num_images"]} images of '
              f'val_dataloader (padded to {", ".join(shapes)})' +
              ('' if result['num_images'] == args.num_images else
               f'; it has no more than {result["num_images"]} of the '
               f'{args.num_images} asked for'))
        if proposals is not None:
            low, high = min(proposals), max(proposals)
            proposals = low if low == high else f'{low}-{high}'
    if proposals is not None:
        print(f'RoI head counted on {proposals} proposals')
    print(f'{CONVENTION}; adds, activations, max pooling and mmcv\'s '
          'compiled ops (NMS, RoIAlign, deformable conv) count zero')
    if args.out:
        write_json(args.out, result)
        print(f'written to {args.out}')


if __name__ == '__main__':
    run_tool(main)
