# Copyright (c) Res2Net-MMDet contributors. All rights reserved.
"""Check a COCO-format dataset as a config will read it.

Every split the config uses (train, val, test; HTC's semantic maps too) is
read the way mmdet's ``CocoDataset`` reads it, and summarised: images (and
how many mmdet's filter keeps), instances per class, COCO's small / medium /
large sizes, and the problems found, with their counts and first ids.
Problems that would stop ``tools/train.py`` are marked STOP; annotations
mmdet drops by design are marked skip. ``--images`` also decodes every
image, which the training tools' own quick check (the same code,
``projects/res2net/datasets/dataset_check.py``) leaves out.

Exit status: 0 when nothing stops training, 2 otherwise.

Example:
    python tools/misc/check_dataset.py configs/htc_r2_101_fpn_20e.py \\
        --cfg-options data_root=data/demo/ --images
"""
import argparse

from projects.res2net.datasets.dataset_check import (check_split,
                                                     dataset_configs,
                                                     format_report)
from projects.res2net.engine.cli import (add_cfg_options, check_data,
                                         load_config, run_tool, tool_parser)
from projects.res2net.errors import UserError

SPLITS = {
    'train': 'train_dataloader',
    'val': 'val_dataloader',
    'test': 'test_dataloader'
}


def parse_args() -> argparse.Namespace:
    parser = tool_parser(
        'Check a COCO-format dataset as a config reads it, and summarise it',
        'python tools/misc/check_dataset.py configs/htc_r2_101_fpn_20e.py '
        '--cfg-options data_root=data/demo/ --images')
    parser.add_argument('config', help='config file path')
    parser.add_argument(
        '--splits',
        nargs='+',
        choices=list(SPLITS),
        default=list(SPLITS),
        help='the splits to check (default: every one the config has)')
    parser.add_argument(
        '--images',
        action='store_true',
        help='also decode every image (slow on COCO); without it, only check'
        ' that each is there')
    add_cfg_options(parser)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    cfg = load_config(args.config, args.cfg_options)
    loaders = [SPLITS[split] for split in args.splits]
    check_data(cfg, loaders)
    seen = {}
    stops = 0
    for loader, dataset in dataset_configs(cfg, loaders):
        key = repr(sorted(dataset.items()))
        if key in seen:  # mmdet's test split is often the val one
            print(f'{loader}: the same dataset as {seen[key]}')
            continue
        seen[key] = loader
        report = check_split(dataset, loader, images=args.images)
        print(format_report(report))
        stops += len(report.stops())
    if not seen:
        raise UserError(f'{args.config} has no annotated dataset in '
                        f'{", ".join(loaders)}')
    if stops:
        raise UserError(
            f'{stops} problem(s) marked STOP above would stop training; '
            'fix the annotation file(s) or put the missing files in place')
    print('no problem stops training' +
          ('' if args.images else ' (images not decoded; --images does)'))


if __name__ == '__main__':
    run_tool(main)
