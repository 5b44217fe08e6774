# Copyright (c) Res2Net-MMDet contributors. All rights reserved.
"""Res2Net in any mmdet detector: write the config that swaps its ResNet.

BASE is an mmdet config (``mmdet::<family>/<name>.py``) or a local file;
the written leaf config inherits it and this project's backbone base, and
replaces the backbone with ``Res2NetBackbone`` of the published variant,
keeping what the detector set on its ResNet (which stages it outputs, what
is frozen, its norm layers, DCN, strides and dilations) and reading the
variant's ImageNet weights. The model is built before the file is written.
What is kept and why is in ``projects/res2net/zoo/config_maker.py``.

Exit status: 0 when written (or when BASE already is Res2Net: nothing to
do), 2 with one line when BASE cannot take a Res2Net.

Example:
    python tools/misc/res2net_config.py \\
        mmdet::dino/dino-4scale_r50_8xb2-12e_coco.py \\
        --variant res2net101_v1b_26w_4s --out configs/dino_4scale_r2_101_12e.py
"""
import argparse

from projects.res2net.engine.cli import run_tool, tool_parser
from projects.res2net.models.variants import RESNET_VARIANTS, VARIANTS
from projects.res2net.zoo.config_maker import NothingToDo, make_config


def parse_args() -> argparse.Namespace:
    parser = tool_parser(
        'Write the Res2Net version of an mmdet detector config: its ResNet '
        'backbone swapped for a published Res2Net variant',
        'python tools/misc/res2net_config.py '
        'mmdet::dino/dino-4scale_r50_8xb2-12e_coco.py --variant '
        'res2net101_v1b_26w_4s --out configs/dino_4scale_r2_101_12e.py')
    parser.add_argument(
        'base', help='mmdet::<family>/<name>.py or a config file')
    parser.add_argument(
        '--variant',
        required=True,
        choices=list(VARIANTS),  # a DLA one is refused saying why
        metavar='VARIANT',
        help='a published Res2Net: ' + ', '.join(RESNET_VARIANTS))
    parser.add_argument(
        '--out',
        help='the config to write (default: configs/<the base\'s name with '
        'its ResNet replaced by the variant>.py)')
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    try:
        made = make_config(args.base, args.variant, args.out)
    except NothingToDo as done:
        print(f'{args.base}: {done}')
        return
    swap = made.swap
    print(f'{".".join(swap.path)}: {swap.resnet.get("type")}-'
          f'{swap.resnet.get("depth")} -> Res2NetBackbone ({args.variant}); '
          f'kept: {", ".join(swap.kept) or "nothing"}')
    for note in swap.notes:
        print(f'note: {note}')
    print(f'ImageNet weights: {swap.res2net["init_cfg"]["checkpoint"]}')
    print(f'the model builds; written to {made.path}')


if __name__ == '__main__':
    run_tool(main)
