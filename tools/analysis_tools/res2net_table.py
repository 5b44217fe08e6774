# Copyright (c) Res2Net-MMDet contributors. All rights reserved.
"""Print the Res2Net size table: params and MACs of every named variant.

Params count the 1000-class ImageNet head, as the paper's table does; MACs
are mmengine's complexity count (a multiply-add is one) at 224x224.

Example:
    python tools/analysis_tools/res2net_table.py
    python tools/analysis_tools/res2net_table.py --variants res2next50
"""
import argparse
import logging

from mmengine.logging import MMLogger

from projects.res2net.engine.cli import run_tool, tool_parser
from projects.res2net.models.variants import (VARIANTS, measure_size,
                                              variant_kwargs)


def parse_args() -> argparse.Namespace:
    parser = tool_parser(
        'Print params (M) and MACs (G) of the Res2Net variants '
        'as a markdown table', 'python tools/analysis_tools/res2net_table.py')
    parser.add_argument(
        '--variants',
        nargs='+',
        default=list(VARIANTS),
        metavar='NAME',
        help='variants to measure (default: all)')
    parser.add_argument(
        '--image-size', type=int, default=224, help='input side in pixels')
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    for name in args.variants:
        variant_kwargs(name)  # an unknown name fails before any work
    # The counter warns about every op it does not count (pools, adds).
    MMLogger.get_current_instance().setLevel(logging.ERROR)
    print('| variant | params (M) | MACs (G) |')
    print('|---|---|---|')
    for name in args.variants:
        params, macs = measure_size(name, args.image_size)
        print(f'| {name} | {params:.2f} | {macs:.2f} |', flush=True)


if __name__ == '__main__':
    run_tool(main)
