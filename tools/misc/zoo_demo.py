# Copyright (c) Res2Net-MMDet contributors. All rights reserved.
"""Run the model-zoo configs on the demo data and print their zoo table.

For each config: ``tools/train.py`` (from scratch, short, small images),
``tools/test.py`` on the last checkpoint, ``tools/analysis_tools/benchmark.py``
on it, each into ``WORK_DIR/<config name>``; then
``tools/analysis_tools/benchmark_table.py`` over all of them, which also
writes ``WORK_DIR/metafile.yml``. The runs say nothing about COCO accuracy:
they show the whole path from a config to a table row on any machine.
These are the steps that ``tools/misc/zoo_slurm.py`` submits as Slurm jobs
(:mod:`projects.res2net.zoo_runs`), and as there, running it again does only
what is left: a finished run is kept, one that was cut off resumes.

Example:
    python tools/misc/zoo_demo.py --work-dir work_dirs/zoo_demo
"""
import argparse
import os.path as osp
import subprocess
import sys
import time

from projects.res2net.cli import load_config, run_tool, tool_parser
from projects.res2net.demo_data import generate_demo_dataset
from projects.res2net.errors import UserError
from projects.res2net.zoo import REFERENCE, demo_run_options
from projects.res2net.zoo_runs import progress, steps, zoo_run

TOOLS = osp.dirname(osp.dirname(osp.abspath(__file__)))


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


def check_config(config: str) -> None:
    """Stop before any run on a config that the demo options do not fit.

    Raises:
        UserError: A missing or unreadable config, or one that trains by
            iterations (the demo runs set ``train_cfg.max_epochs``).
    """
    loop = load_config(config).get('train_cfg', {})
    if loop.get('type', 'EpochBasedTrainLoop') != 'EpochBasedTrainLoop':
        raise UserError(f'{config} trains with {loop["type"]}; zoo_demo.py '
                        'runs epoch-based model-zoo configs (configs/*.py), '
                        'for --epochs')


class Steps:
    """Runs the tools one after another, saying which step of how many.

    Each step prints ``[k/n] python tools/...`` and then its time; a tool's
    own output is shown only if it fails, or when the step is not quiet.
    """

    def __init__(self, total: int) -> None:
        self.total = total
        self.done = 0

    def run(self, tool: str, *args: str, quiet: bool = True) -> None:
        self.done += 1
        command = [sys.executable, osp.join(TOOLS, tool), *args]
        print(
            f'[{self.done}/{self.total}] python tools/{tool} ' +
            ' '.join(args[:1]),
            flush=True)
        start = time.monotonic()
        done = subprocess.run(command, capture_output=quiet, text=True)
        if done.returncode != 0:
            if quiet:
                print(
                    done.stdout[-2000:] + done.stderr[-3000:], file=sys.stderr)
            raise UserError(f'step {self.done}, tools/{tool}, failed (exit '
                            f'{done.returncode}); its output is above. The '
                            'command: ' + ' '.join(command[1:]))
        print(f'      done in {time.monotonic() - start:.0f} s', flush=True)


def main() -> None:
    args = parse_args()
    for config in args.configs:
        check_config(config)
    if not osp.isdir(args.data):
        generate_demo_dataset(args.data)
    options = demo_run_options(
        args.data,
        scale=args.scale,
        epochs=args.epochs,
        train_images=args.train_images,
        test_images=args.test_images)
    bench = ('--num-images', str(args.test_images), '--warmup',
             str(args.warmup))
    runs = [
        zoo_run(config, args.work_dir, options, bench)[0]
        for config in args.configs
    ]
    left = {}
    for run in runs:
        done = progress(run)
        left[run.name] = steps(run)[done.done:]
        if done.done or done.resume_from:
            print(
                f'{run.name}: {done.describe()} in {run.work_dir}; '
                f'{len(left[run.name])} of 3 steps left',
                flush=True)
    runner = Steps(total=sum(map(len, left.values())) + 1)
    for run in runs:
        for step in left[run.name]:
            runner.run(step.tool, *step.args)
    runner.run(
        'analysis_tools/benchmark_table.py',
        *(run.work_dir for run in runs),
        '--metafile',
        osp.join(args.work_dir, 'metafile.yml'),
        quiet=False)


if __name__ == '__main__':
    run_tool(main)
