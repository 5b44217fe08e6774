# Copyright (c) Res2Net-MMDet contributors. All rights reserved.
"""Run the model-zoo configs on the demo data and print their zoo table.

An entry point: the work is done in :mod:`projects.res2net.zoo.demo`.

Example:
    python tools/misc/zoo_demo.py --work-dir work_dirs/zoo_demo
"""
import argparse

from projects.res2net.engine.cli import run_tool, tool_parser
from projects.res2net.zoo.demo import DemoSize, run_demo_zoo
from projects.res2net.zoo.table import REFERENCE


def parse_args() -> argparse.Namespace:
    parser = tool_parser(
        'Train, test and benchmark the model-zoo configs briefly '
        'on the demo data, then print their model-zoo table',
        'python tools/misc/zoo_demo.py --work-dir '
        'work_dirs/zoo_demo')
    parser.add_argument(
        '--configs',
        nargs='+',
        default=[row.config for row in REFERENCE],
        help='configs to run (default: the five R2-101 zoo configs)')
    parser.add_argument(
        '--data',
        default='data/demo',
        help='the demo data; generated (as tools/misc/generate_demo_data.py '
        'does) if the dir does not exist')
    parser.add_argument('--work-dir', default='work_dirs/zoo_demo')
    parser.add_argument('--epochs', type=int, default=1)
    parser.add_argument(
        '--train-images',
        type=int,
        default=8,
        help='train on the first N demo images')
    parser.add_argument(
        '--test-images',
        type=int,
        default=8,
        help='test and benchmark on the first N validation images')
    parser.add_argument('--scale', type=int, default=128, help='image side')
    parser.add_argument(
        '--warmup',
        type=int,
        default=5,
        help='images benchmark.py runs before it times (default: 5)')
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    run_demo_zoo(
        args.configs,
        data=args.data,
        work_dir=args.work_dir,
        size=DemoSize(args.epochs, args.train_images, args.test_images,
                      args.scale),
        warmup=args.warmup)


if __name__ == '__main__':
    run_tool(main)
