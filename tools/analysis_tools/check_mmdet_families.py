# Copyright (c) Res2Net-MMDet contributors. All rights reserved.
"""Res2Net across mmdet's detector families: the compatibility table.

For every config family mmdet ships in its package with a ResNet-50
config, build that config as shipped (the control) and with Res2Net-50 in
place of its ResNet (as ``tools/misc/res2net_config.py`` writes it), run a
training and a test forward of each on mmdet's own small test inputs, and
print one row per family: control, Res2Net, the reason of a failure, the
seconds. Each family runs in its own process with ``--timeout``. What is
checked, and how the config of each family is picked, is in
``projects/res2net/zoo/families.py``.

Exit status: 0 when every family whose control passes also passes with
Res2Net, 1 otherwise.

Example:
    python tools/analysis_tools/check_mmdet_families.py --out families.json
    python tools/analysis_tools/check_mmdet_families.py --families atss dino
"""
import argparse
import datetime
import sys

import mmcv
import mmdet
import mmengine
import torch
from mmengine.utils import ProgressBar

from projects.res2net.engine.cli import run_tool, tool_parser
from projects.res2net.engine.fileio import write_json
from projects.res2net.models.variants import RESNET_VARIANTS
from projects.res2net.zoo.families import (VARIANT, check_families,
                                           family_configs, mmdet_configs_root,
                                           status, summary, table)


def parse_args() -> argparse.Namespace:
    parser = tool_parser(
        'Build every mmdet detector family with its ResNet-50 and with '
        'Res2Net-50, run a training and a test forward of each, and print '
        'the compatibility table',
        'python tools/analysis_tools/check_mmdet_families.py --families '
        'retinanet dino --out families.json')
    parser.add_argument(
        '--families',
        nargs='+',
        metavar='FAMILY',
        help='only these families (default: every one with a ResNet-50 '
        'config)')
    parser.add_argument(
        '--variant',
        default=VARIANT,
        choices=list(RESNET_VARIANTS),
        metavar='VARIANT',
        help=f'the Res2Net put in (default: {VARIANT})')
    parser.add_argument(
        '--timeout',
        type=float,
        default=300,
        help='seconds a family may take before it is stopped (default: 300)')
    parser.add_argument('--out', help='also write the rows to this JSON')
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    root = mmdet_configs_root()
    items = family_configs(root, args.families)
    versions = (f'mmdet {mmdet.__version__}, mmcv {mmcv.__version__}, '
                f'mmengine {mmengine.__version__}, torch {torch.__version__}')
    print(f'{len(items)} families of {root} with a ResNet-50 config; '
          f'{args.variant} in place of it; {versions}; '
          f'{datetime.date.today().isoformat()}')
    bar = ProgressBar(len(items), file=sys.stdout)
    rows = []
    for row in check_families(
            root, items, variant=args.variant, timeout=args.timeout):
        rows.append(row)
        bar.update()
    print()
    print(table(rows))
    print(summary(rows))
    if args.out:
        write_json(
            args.out,
            dict(
                versions=versions,
                variant=args.variant,
                rows=[{
                    k: v
                    for k, v in r.items() if not k.endswith('traceback')
                } for r in rows]))
        print(f'written to {args.out}')
    failed = [r['family'] for r in rows if status(r) == 'res2net fails']
    if failed:
        for row in rows:
            if row['family'] in failed:
                print(
                    f'{row["family"]}: {row["res2net_traceback"]}',
                    file=sys.stderr)
        sys.exit(1)


if __name__ == '__main__':
    run_tool(main)
