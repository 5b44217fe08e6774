# Copyright (c) Res2Net-MMDet contributors. All rights reserved.
"""Plot training curves and time the iterations of ``tools/train.py`` runs.

mmdet's ``analyze_logs.py`` for the log that mmengine's Runner writes: the
JSON-lines scalar file ``WORK_DIR/<timestamp>/vis_data/scalars.json``. A
LOG argument may be that file (or the ``<timestamp>.json`` beside it, mmdet's
``log.json``), a ``<timestamp>`` dir or the work dir (the newest run inside
is taken). mmdet 3.3's arguments are taken with their meaning (``--out``'s
extension picks the format, no ``--out`` shows a window; ``--backend``,
``--style``, ``--start-epoch``, ``--eval-interval``). The curves and the
timing are :mod:`projects.res2net.analysis.curves`'s.

Example:
    python tools/analysis_tools/analyze_logs.py plot_curve \\
        work_dirs/demo --keys loss bbox_mAP --out curve.png
    python tools/analysis_tools/analyze_logs.py plot_curve \\
        work_dirs/demo/20240101_000000/vis_data/20240101_000000.json \\
        --keys loss_cls loss_bbox --out losses.pdf
    python tools/analysis_tools/analyze_logs.py cal_train_time work_dirs/demo
"""
import argparse

from projects.res2net.analysis.curves import (STYLES, check_eval_interval,
                                              from_epoch, load_runs,
                                              plot_curve, train_time)
from projects.res2net.engine.cli import example_epilog, run_tool, tool_parser


def parse_args() -> argparse.Namespace:
    parser = tool_parser(
        'Analyze the scalars.json logs of tools/train.py',
        'python tools/analysis_tools/analyze_logs.py '
        'plot_curve work_dirs/demo --keys loss bbox_mAP --out curve.png')
    commands = parser.add_subparsers(dest='command', required=True)
    plot = commands.add_parser(
        'plot_curve',
        help='plot keys against the iteration, runs overlaid',
        **example_epilog(
            'python tools/analysis_tools/analyze_logs.py '
            'plot_curve work_dirs/a work_dirs/b --keys loss bbox_mAP '
            '--legend a b --out curve.png'))
    plot.add_argument(
        'logs',
        nargs='+',
        metavar='LOG',
        help='scalars.json (or <timestamp>.json beside it), <timestamp> dir '
        'or work dir (newest run)')
    plot.add_argument(
        '--keys',
        nargs='+',
        default=['bbox_mAP'],
        help='keys to plot, e.g. loss loss_cls lr bbox_mAP (short for '
        'coco/bbox_mAP); one subplot each')
    plot.add_argument(
        '--out',
        help='the file to write, in the format its extension names (.png, '
        '.pdf, .svg, ...; png without one); default: show a window')
    plot.add_argument(
        '--legend',
        nargs='+',
        default=[],
        metavar='NAME',
        help='one name per log, or per log and key (default: the work '
        'dir name and the key)')
    plot.add_argument('--title', default='', help='figure title')
    plot.add_argument(
        '--backend',
        help="matplotlib's backend: the window's (e.g. TkAgg) or the "
        "file's renderer (e.g. cairo); default: matplotlib's")
    plot.add_argument(
        '--style',
        choices=STYLES,
        help="seaborn's style, from matplotlib's seaborn-v0_8 sheets "
        "(mmdet's default: dark; here: matplotlib's plain look)")
    plot.add_argument(
        '--start-epoch',
        type=int,
        default=1,
        help='plot from this epoch of an epoch-based run on (default: 1)')
    plot.add_argument(
        '--eval-interval',
        type=int,
        help="the training's val_interval in epochs, as mmdet's tool takes "
        'it: each key must have been logged in that epoch')
    timing = commands.add_parser(
        'cal_train_time',
        help='time per training iteration',
        **example_epilog('python tools/analysis_tools/analyze_logs.py '
                         'cal_train_time work_dirs/demo'))
    timing.add_argument(
        'logs',
        nargs='+',
        metavar='LOG',
        help='scalars.json (or <timestamp>.json beside it), <timestamp> dir '
        'or work dir (newest run)')
    timing.add_argument(
        '--include-outliers',
        action='store_true',
        help='count the first logging window (warm-up) too')
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    runs = load_runs(args.logs)
    if args.command == 'plot_curve':
        if args.eval_interval is not None:  # on the whole runs
            check_eval_interval(runs, args.keys, args.eval_interval)
        runs = [from_epoch(run, args.start_epoch) for run in runs]
        plot_curve(
            runs,
            args.keys,
            args.out,
            legend=args.legend,
            title=args.title,
            style=args.style,
            backend=args.backend)
        if args.out is not None:
            print(f'curve written to {args.out}')
        return
    for run in runs:
        timing = train_time(run, include_outliers=args.include_outliers)
        slowest, fastest = timing.slowest, timing.fastest
        print(f'-----Analyze train time of {run.path}-----')
        print(f'slowest window: up to iteration {slowest[0]}, '
              f'{slowest[1]:.4f} s/iter')
        print(f'fastest window: up to iteration {fastest[0]}, '
              f'{fastest[1]:.4f} s/iter')
        print(f'time std over windows: {timing.std:.4f}')
        if timing.epochs:  # mmdet's lines, for an epoch-based run
            (slow, slow_s), (fast, fast_s) = (timing.slowest_epoch,
                                              timing.fastest_epoch)
            print(f'slowest epoch {slow}, average time is {slow_s:.4f} '
                  's/iter')
            print(f'fastest epoch {fast}, average time is {fast_s:.4f} '
                  's/iter')
            print(f'time std over epochs is {timing.epoch_std:.4f}')
        print(f'average iter time: {timing.mean:.4f} s/iter')
        print(f'{timing.iterations} iterations take about '
              f'{timing.total_s / 60:.1f} min')


if __name__ == '__main__':
    run_tool(main)
