# Copyright (c) Res2Net-MMDet contributors. All rights reserved.
"""Convert released Res2Net weights to ``Res2NetBackbone`` (and back).

Reads a local checkpoint of the official code (``res2net.py``,
``res2net_v1b.py``, ``res2next.py``, ``dla.py``) or of timm (``res2net*``,
``dla60_res2net``, ``dla60_res2next``), renames its keys (the DLA variants
build ``Res2NetDLA``, whose keys are the official ones; timm's DLA files get
the official code's unused projections filled in), checks them against the
chosen variant strictly, and writes a checkpoint that a config's
``init_cfg=dict(type='Pretrained', checkpoint=DST)`` loads. ``--reverse``
writes the official/timm names.

Example:
    python tools/model_converters/res2net_to_backbone.py \\
        res2net101_v1b_26w_4s-0812c246.pth \\
        checkpoints/res2net101_v1b_26w_4s.pth --variant res2net101_v1b_26w_4s
"""
import argparse
import os.path as osp

import torch

from projects.res2net.engine.cli import run_tool, tool_parser
from projects.res2net.engine.fileio import write_atomically
from projects.res2net.models.checkpoint import check_fits, read_state_dict
from projects.res2net.models.convert import (fill_unused_dla_keys,
                                             from_backbone, to_backbone)
from projects.res2net.models.variants import (DLA_VARIANTS, VARIANTS,
                                              backbone_type, build_variant,
                                              variant_kwargs)


def parse_args() -> argparse.Namespace:
    parser = tool_parser(
        'Convert official or timm Res2Net weights to '
        'Res2NetBackbone key names (or back with --reverse)',
        'python tools/model_converters/res2net_to_backbone.py'
        ' res2net50_26w_4s-06e79181.pth r2_50.pth --variant res2net50_26w_4s')
    parser.add_argument('src', help='checkpoint to convert (a local file)')
    parser.add_argument('dst', help='where to write the converted file')
    parser.add_argument(
        '--variant',
        required=True,
        choices=list(VARIANTS),
        metavar='NAME',
        help='the network the weights are for: ' + ', '.join(VARIANTS))
    parser.add_argument(
        '--reverse',
        action='store_true',
        help='convert Res2NetBackbone weights to the official/timm names')
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    kwargs = variant_kwargs(args.variant)
    backbone = build_variant(args.variant)
    fix = (f'is it a {args.variant} checkpoint? pick the --variant it was '
           'trained as (tools/analysis_tools/res2net_table.py lists them)')
    state = read_state_dict(
        args.src, what='checkpoint', fix='pass an existing local .pth file')
    if args.reverse:
        check_fits(backbone, state, source=args.src, fix=fix)
        conversion = from_backbone(state)
        payload = conversion.state_dict
    else:
        conversion = to_backbone(state)
        filled = []
        if args.variant in DLA_VARIANTS:
            # timm leaves out the official trees' unused projections.
            completed, filled = fill_unused_dla_keys(conversion.state_dict,
                                                     backbone)
            conversion.state_dict.update(completed)
        check_fits(backbone, conversion.state_dict, source=args.src, fix=fix)
        payload = dict(
            state_dict=conversion.state_dict,
            meta=dict(
                res2net_variant=args.variant,
                backbone=kwargs,
                converted_from=osp.basename(args.src)))

    write_atomically(args.dst, lambda tmp: torch.save(payload, tmp))

    dropped = ', '.join(conversion.dropped) or 'none'
    print(f'{args.src} -> {args.dst} ({args.variant})')
    print(f'  converted: {len(conversion.state_dict)} tensors, '
          f'{len(conversion.renamed)} renamed')
    print(f'  dropped: {len(conversion.dropped)} ({dropped})')
    print('  unexpected: 0')
    if not args.reverse and args.variant in DLA_VARIANTS:
        print(f'  filled: {len(filled)} (unused projections; none in an '
              'official file, all in a timm one)')
    if not args.reverse:
        kind = backbone_type(args.variant)
        print(
            f'  use with: model.backbone = dict(type=\'{kind}\', ' +
            ', '.join(f'{k}={v!r}' for k, v in kwargs.items()) +
            f', init_cfg=dict(type=\'Pretrained\', checkpoint=\'{args.dst}\'))'
        )


if __name__ == '__main__':
    run_tool(main)
