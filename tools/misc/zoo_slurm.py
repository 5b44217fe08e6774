# Copyright (c) Res2Net-MMDet contributors. All rights reserved.
"""The model zoo on a Slurm cluster: submit, follow, gather and publish.

An entry point: the work is done in :mod:`projects.res2net.zoo.jobs`.

Example:
    PARTITION=gpu GPUS=8 python tools/misc/zoo_slurm.py submit \\
        configs/faster_rcnn_r2_101_fpn_2x.py configs/htc_r2_101_fpn_20e.py \\
        --work-dir work_dirs/zoo
    python tools/misc/zoo_slurm.py status --work-dir work_dirs/zoo --wait
    python tools/misc/zoo_slurm.py gather --work-dir work_dirs/zoo
"""
import argparse
import os

from projects.res2net.engine.cli import example_epilog, run_tool, tool_parser
from projects.res2net.zoo.demo import DemoSize
from projects.res2net.zoo.jobs import follow, gather, show_status, submit_jobs

EXAMPLE = ('PARTITION=gpu GPUS=8 python tools/misc/zoo_slurm.py submit '
           'configs/faster_rcnn_r2_101_fpn_2x.py --work-dir work_dirs/zoo')


def parse_args() -> argparse.Namespace:
    parser = tool_parser(
        'Run the model-zoo configs as Slurm batch jobs (train, test, '
        'benchmark), follow them, and gather the published checkpoints into '
        'the model-zoo table and metafile.yml', EXAMPLE)
    commands = parser.add_subparsers(dest='command', required=True)

    sub = commands.add_parser(
        'submit',
        help='one batch job per config; returns at once unless --wait',
        description='Submit one batch job per config (train with --resume, '
        'test, benchmark). Sized by the environment as tools/slurm_train.sh '
        'is: GPUS (8), GPUS_PER_NODE (8), CPUS_PER_TASK (5), GRES '
        '(gpu:GPUS_PER_NODE; none on CPU-only clusters), SRUN_ARGS; sbatch '
        'also reads its own SBATCH_* variables (e.g. SBATCH_TIMELIMIT). '
        'Each job is requeueable and gets SIGUSR1 STOP_SIGNAL_LEAD (120) '
        'seconds before its time limit: training checkpoints there and '
        'requeues the job, which resumes. Finished runs and queued or '
        'running jobs are skipped; cut-off runs resume.',
        **example_epilog(EXAMPLE))
    sub.add_argument('configs', nargs='+', metavar='CONFIG')
    sub.add_argument(
        '--partition',
        default=os.environ.get('PARTITION'),
        help='the Slurm partition (default: $PARTITION)')
    _work_dir(sub)
    sub.add_argument(
        '--cfg-options',
        nargs='+',
        default=[],
        metavar='KEY=VALUE',
        help='config overrides for every step of every job, as the tools '
        'take them')
    sub.add_argument(
        '--num-images',
        type=int,
        help='images benchmark.py times (default: its 200; with '
        '--demo-data, --test-images)')
    sub.add_argument(
        '--warmup',
        type=int,
        help='images benchmark.py runs first (default: its 5)')
    demo = sub.add_argument_group(
        'demo size', 'try the workflow on the demo data first: short runs '
        'from scratch at a small image size, as tools/misc/zoo_demo.py runs')
    demo.add_argument(
        '--demo-data',
        metavar='DIR',
        help='run on the demo data in DIR (generated if it does not exist)')
    demo.add_argument('--epochs', type=int, default=1)
    demo.add_argument('--train-images', type=int, default=8)
    demo.add_argument('--test-images', type=int, default=8)
    demo.add_argument('--scale', type=int, default=128, help='image side')
    _follow(sub)

    sub = commands.add_parser(
        'status',
        help='the state of each job (--wait: until all have ended)',
        description='Show the jobs that submit sent into WORK_DIR: state, '
        'time, the step each is in, how often it was requeued; a job that '
        'ended without finishing its run is named with the tail of its log '
        '(exit status 2).',
        **example_epilog('python tools/misc/zoo_slurm.py status --work-dir '
                         'work_dirs/zoo --wait'))
    _work_dir(sub)
    _follow(sub)

    sub = commands.add_parser(
        'gather',
        help='publish the finished runs; print the table; write metafile.yml',
        description='Publish the last checkpoint of each finished run as '
        'PUBLISH_DIR/<model>-<sha8>.pth (tools/model_converters/'
        'publish_model.py), print the model-zoo table of all runs '
        '(unfinished ones as "–", the reason on stderr) and write the '
        'finished ones into the metafile.',
        **example_epilog('python tools/misc/zoo_slurm.py gather --work-dir '
                         'work_dirs/zoo'))
    _work_dir(sub)
    sub.add_argument('--publish-dir', help='default: WORK_DIR/published')
    sub.add_argument('--metafile', help='default: WORK_DIR/metafile.yml')
    return parser.parse_args()


def _work_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        '--work-dir',
        default='work_dirs/zoo',
        help='one work dir per config below it (default: work_dirs/zoo)')


def _follow(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        '--wait',
        action='store_true',
        help='follow the jobs until all have ended')
    parser.add_argument(
        '--poll',
        type=float,
        default=30,
        help='seconds between two looks at the jobs (default: 30)')


def main() -> None:
    args = parse_args()
    if args.command == 'submit':
        followed = submit_jobs(
            args.configs,
            partition=args.partition,
            work_dir=args.work_dir,
            cfg_options=args.cfg_options,
            num_images=args.num_images,
            warmup=args.warmup,
            demo_data=args.demo_data,
            demo_size=DemoSize(args.epochs, args.train_images,
                               args.test_images, args.scale))
        if args.wait:
            follow(followed, args.poll)
        elif followed:
            print('follow them with: python tools/misc/zoo_slurm.py status '
                  f'--work-dir {args.work_dir} --wait')
    elif args.command == 'status':
        show_status(args.work_dir, wait=args.wait, poll=args.poll)
    else:
        gather(
            args.work_dir,
            publish_dir=args.publish_dir,
            metafile=args.metafile)


if __name__ == '__main__':
    run_tool(main)
