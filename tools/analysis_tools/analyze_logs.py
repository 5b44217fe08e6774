# Copyright (c) Res2Net-MMDet contributors. All rights reserved.
"""Plot training curves and time the iterations of ``tools/train.py`` runs.

mmdet's ``analyze_logs.py`` for the log that mmengine's Runner writes: the
JSON-lines scalar file ``WORK_DIR/<timestamp>/vis_data/scalars.json``, one
dict per logged training window or validation, each with its ``step``. A
LOG argument may be that file, a ``<timestamp>`` dir or the work dir (the
newest run inside is taken).

Example:
    python tools/analysis_tools/analyze_logs.py plot_curve \\
        work_dirs/demo --keys loss bbox_mAP --out curve.png
    python tools/analysis_tools/analyze_logs.py cal_train_time work_dirs/demo
"""
import argparse
import os
import os.path as osp
from glob import glob
from typing import Dict, List, NamedTuple, Sequence, Tuple

from matplotlib.figure import Figure

from projects.res2net.cli import (example_epilog, run_tool, tool_parser,
                                  write_atomically)
from projects.res2net.errors import UserError
from projects.res2net.logs import read_scalars

_LOG_FIX = ('pass a work dir of tools/train.py, one of its <timestamp> dirs '
            'or its <timestamp>/vis_data/scalars.json')


class Run(NamedTuple):
    """One training run's log.

    Attributes:
        name: The run's name in legends: its work dir's name.
        path: The scalars.json that was read.
        records: The logged dicts, in file order.
    """
    name: str
    path: str
    records: List[dict]


def find_log(path: str) -> str:
    """The scalars.json for a LOG argument.

    Args:
        path: A scalars.json, a ``<timestamp>`` dir or a work dir.

    Returns:
        The file; for a work dir, the one of its newest run (mmengine names
        the run dirs by their start time).

    Raises:
        UserError: Nothing there, or no scalars.json under the dir.
    """
    if osp.isfile(path):
        return path
    if not osp.isdir(path):
        raise UserError(f'log not found: {path}; {_LOG_FIX}')
    found = glob(osp.join(path, 'vis_data', 'scalars.json')) + glob(
        osp.join(path, '*', 'vis_data', 'scalars.json'))
    if not found:
        raise UserError(f'no vis_data/scalars.json under {path} (a test run '
                        f'writes none); {_LOG_FIX}')
    return max(
        found,
        key=lambda p:
        (osp.basename(osp.dirname(osp.dirname(p))), osp.getmtime(p)))


def run_name(path: str) -> str:
    """The name of the run that wrote ``path``: its work dir's name."""
    parts = osp.abspath(path).split(os.sep)
    if len(parts) >= 4 and parts[-2] == 'vis_data':
        return parts[-4]
    stem = osp.splitext(parts[-1])[0]
    return parts[-2] if stem == 'scalars' and len(parts) >= 2 else stem


def load_records(path: str) -> List[dict]:
    """Read a scalars.json (see :func:`~projects.res2net.logs.read_scalars`).

    Raises:
        UserError: A line that is not a JSON dict with a ``step``, or no
            records at all.
    """
    records = read_scalars(path, fix=_LOG_FIX)
    if not records:
        raise UserError(f'{path} holds no scalars yet; {_LOG_FIX}')
    return records


def load_runs(logs: Sequence[str]) -> List[Run]:
    """Find and read every LOG; name each run after its work dir.

    Two runs with the same work-dir name are told apart by their
    ``<timestamp>`` dirs, or else by their position.
    """
    paths = [find_log(log) for log in logs]
    plain = [run_name(path) for path in paths]
    names = list(plain)
    for i, name in enumerate(plain):
        if plain.count(name) > 1:
            stamp = osp.basename(osp.dirname(osp.dirname(paths[i])))
            names[i] = f'{name}/{stamp}' if osp.basename(
                osp.dirname(paths[i])) == 'vis_data' else f'{name}#{i + 1}'
    if len(set(names)) < len(names):
        names = [f'{name}#{i + 1}' for i, name in enumerate(names)]
    return [
        Run(name, path, load_records(path))
        for name, path in zip(names, paths)
    ]


def iterations(records: Sequence[dict]) -> List[int]:
    """The training iteration at which each record was logged.

    A training record's ``step`` is the iteration. mmengine logs a
    validation with ``step=epoch`` by default (``LoggerHook``'s
    ``log_metric_by_epoch``), which is 0 in an iteration-based run; a
    record whose step is behind the iterations logged before it is placed
    at the last of them.
    """
    result, last = [], None
    for record in records:
        step = record['step']
        if last is not None and step < last:
            step = last
        result.append(step)
        last = step if last is None else max(last, step)
    return result


def resolve_key(key: str, run: Run) -> str:
    """The run's name for ``key``: itself, or ``<prefix>/key``.

    So ``bbox_mAP`` finds CocoMetric's ``coco/bbox_mAP``.

    Raises:
        UserError: Names the key, the log and the keys the log has.
    """
    available = sorted({k
                        for record in run.records
                        for k in record} - {'step'})
    if key in available:
        return key
    matches = [k for k in available if k.endswith('/' + key)]
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise UserError(f'key {key!r} is ambiguous in {run.path}: '
                        f'{", ".join(matches)}; pass one of them')
    raise UserError(f'key {key!r} not in {run.path}; it has: '
                    f'{", ".join(available)}')


def series(run: Run, key: str) -> Tuple[List[int], List[float]]:
    """The (iteration, value) points of ``key`` in ``run``."""
    xs, ys = [], []
    for step, record in zip(iterations(run.records), run.records):
        if key in record:
            xs.append(step)
            ys.append(record[key])
    return xs, ys


def legend_names(runs: Sequence[Run], keys: Sequence[str],
                 legend: Sequence[str]) -> Dict[Tuple[int, str], str]:
    """The legend entry of every (run index, key).

    Args:
        runs: The runs.
        keys: The keys as the user wrote them.
        legend: ``--legend``: empty for "<run> <key>", one name per run, or
            one per run and key (run-major, as mmdet's tool takes them).

    Raises:
        UserError: Another number of names.
    """
    if not legend:
        return {
            (i, key): f'{run.name} {key}'
            for i, run in enumerate(runs)
            for key in keys
        }
    if len(legend) == len(runs):
        return {(i, key): legend[i] for i in range(len(runs)) for key in keys}
    if len(legend) == len(runs) * len(keys):
        names = iter(legend)
        return {
            (i, key): next(names)
            for i in range(len(runs))
            for key in keys
        }
    raise UserError(f'--legend has {len(legend)} names; give one per log '
                    f'({len(runs)}) or one per log and key '
                    f'({len(runs) * len(keys)})')


def plot_curve(runs: Sequence[Run],
               keys: Sequence[str],
               out: str,
               legend: Sequence[str] = (),
               title: str = '') -> None:
    """Plot ``keys`` of ``runs`` against the iteration and save a PNG.

    One subplot per key, stacked over a shared iteration axis, so that a
    loss near 0.1 and an AP near 0.5 are both readable; the runs are
    overlaid in each. Sparse series (validations) get markers.

    Raises:
        UserError: A key that a run does not log, or a bad ``--legend``.
    """
    resolved = {
        (i, key): resolve_key(key, run)
        for i, run in enumerate(runs)
        for key in keys
    }
    names = legend_names(runs, keys, legend)
    fig = Figure(figsize=(8, 1 + 2.6 * len(keys)), layout='constrained')
    axes = fig.subplots(len(keys), 1, sharex=True, squeeze=False)[:, 0]
    for ax, key in zip(axes, keys):
        points = [series(run, resolved[i, key]) for i, run in enumerate(runs)]
        # Markers where a key is sparse (validations), for every run alike.
        marker = 'o' if max(len(xs) for xs, _ in points) <= 30 else None
        ylabels = []
        for i, (xs, ys) in enumerate(points):
            name = resolved[i, key]
            ax.plot(
                xs,
                ys,
                marker=marker,
                markersize=4,
                linewidth=1.5,
                label=names[i, key])
            if name not in ylabels:
                ylabels.append(name)
        ax.set_ylabel(', '.join(ylabels))
        ax.grid(True, alpha=0.3)
        ax.legend(loc='best', fontsize='small')
    axes[-1].set_xlabel('iteration')
    if title:
        fig.suptitle(title)
    write_atomically(out, lambda tmp: fig.savefig(tmp, format='png', dpi=100))


def cal_train_time(runs: Sequence[Run], include_outliers: bool) -> None:
    """Print the time per iteration of each run, as mmdet's tool does.

    A training record's ``time`` is the mean over its logging window; a
    record is a training one when its step moves past the ones before it.
    The first window (model warm-up) is left out unless
    ``include_outliers``.

    Raises:
        UserError: A run without training times.
    """
    for run in runs:
        windows, last = [], None
        for record in run.records:
            step = record['step']
            if (last is None or step > last) and 'time' in record:
                windows.append((step, record['time']))
            last = step if last is None else max(last, step)
        if not include_outliers and len(windows) > 1:
            windows = windows[1:]
        if not windows:
            raise UserError(f'no training times in {run.path}; {_LOG_FIX}')
        times = [t for _, t in windows]
        mean = sum(times) / len(times)
        std = (sum((t - mean)**2 for t in times) / len(times))**0.5
        slowest = max(windows, key=lambda w: w[1])
        fastest = min(windows, key=lambda w: w[1])
        total = mean * windows[-1][0]
        print(f'-----Analyze train time of {run.path}-----')
        print(f'slowest window: up to iteration {slowest[0]}, '
              f'{slowest[1]:.4f} s/iter')
        print(f'fastest window: up to iteration {fastest[0]}, '
              f'{fastest[1]:.4f} s/iter')
        print(f'time std over windows: {std:.4f}')
        print(f'average iter time: {mean:.4f} s/iter')
        print(f'{windows[-1][0]} iterations take about {total / 60:.1f} min')


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
        help='scalars.json, <timestamp> dir or work dir (newest run)')
    plot.add_argument(
        '--keys',
        nargs='+',
        default=['bbox_mAP'],
        help='keys to plot, e.g. loss loss_cls lr bbox_mAP (short for '
        'coco/bbox_mAP); one subplot each')
    plot.add_argument('--out', required=True, help='the PNG to write')
    plot.add_argument(
        '--legend',
        nargs='+',
        default=[],
        metavar='NAME',
        help='one name per log, or per log and key (default: the work '
        'dir name and the key)')
    plot.add_argument('--title', default='', help='figure title')
    timing = commands.add_parser(
        'cal_train_time',
        help='time per training iteration',
        **example_epilog('python tools/analysis_tools/analyze_logs.py '
                         'cal_train_time work_dirs/demo'))
    timing.add_argument('logs', nargs='+', metavar='LOG')
    timing.add_argument(
        '--include-outliers',
        action='store_true',
        help='count the first logging window (warm-up) too')
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    runs = load_runs(args.logs)
    if args.command == 'plot_curve':
        plot_curve(runs, args.keys, args.out, args.legend, args.title)
        print(f'curve written to {args.out}')
    else:
        cal_train_time(runs, args.include_outliers)


if __name__ == '__main__':
    run_tool(main)
