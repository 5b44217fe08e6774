# Copyright (c) Res2Net-MMDet contributors. All rights reserved.
"""Training curves and the time per iteration of ``tools/train.py`` runs.

What ``tools/analysis_tools/analyze_logs.py`` does, mmdet's tool of that
name for the log that mmengine's Runner writes: the JSON-lines scalar file
``WORK_DIR/<timestamp>/vis_data/scalars.json`` (see
:mod:`projects.res2net.engine.logs`), one dict per logged training window
or validation, each with its ``step``. A run is named after its work dir,
for the legends.
"""
import os
import os.path as osp
from typing import Dict, List, NamedTuple, Sequence, Tuple

from matplotlib.figure import Figure

from ..engine.fileio import write_atomically
from ..engine.logs import VIS_DATA, find_scalars, read_scalars
from ..errors import UserError

# What a user can pass as a LOG, for the messages.
LOG_FIX = ('pass a work dir of tools/train.py, one of its <timestamp> dirs '
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


def run_name(path: str) -> str:
    """The name of the run that wrote ``path``: its work dir's name.

    A work dir is named after its config (``work_dirs/<config>``), which
    says more in a legend than the ``<timestamp>``; a file elsewhere is
    named after itself, or after its dir for a ``scalars.json``.
    """
    parts = osp.abspath(path).split(os.sep)
    if len(parts) >= 4 and parts[-2] == VIS_DATA:
        return parts[-4]
    stem = osp.splitext(parts[-1])[0]
    return parts[-2] if stem == 'scalars' and len(parts) >= 2 else stem


def load_records(path: str) -> List[dict]:
    """Read a scalars.json (see
    :func:`~projects.res2net.engine.logs.read_scalars`).

    Raises:
        UserError: A line that is not a JSON dict with a ``step``, or no
            records at all.
    """
    records = read_scalars(path, fix=LOG_FIX)
    if not records:
        raise UserError(f'{path} holds no scalars yet; {LOG_FIX}')
    return records


def load_runs(logs: Sequence[str]) -> List[Run]:
    """Find (:func:`~projects.res2net.engine.logs.find_scalars`) and read
    every LOG; name each run after its work dir.

    Two runs with the same work-dir name are told apart by their
    ``<timestamp>`` dirs, or else by their position, so that each legend
    entry names one run.

    Args:
        logs: The LOG arguments: scalars.json files, ``<timestamp>`` dirs
            or work dirs (their newest run).

    Raises:
        UserError: A LOG that is not there or holds no scalars.
    """
    paths = [find_scalars(log, fix=LOG_FIX) for log in logs]
    plain = [run_name(path) for path in paths]
    names = list(plain)
    for i, name in enumerate(plain):
        if plain.count(name) > 1:
            stamp = osp.basename(osp.dirname(osp.dirname(paths[i])))
            names[i] = f'{name}/{stamp}' if osp.basename(
                osp.dirname(paths[i])) == VIS_DATA else f'{name}#{i + 1}'
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
               *,
               legend: Sequence[str] = (),
               title: str = '') -> None:
    """Plot ``keys`` of ``runs`` against the iteration and save a PNG.

    One subplot per key, stacked over a shared iteration axis, so that a
    loss near 0.1 and an AP near 0.5 are both readable; the runs are
    overlaid in each. Sparse series (validations) get markers.

    Args:
        runs: The runs (see :func:`load_runs`).
        keys: The keys as the user wrote them (see :func:`resolve_key`).
        out: The PNG to write, atomically.
        legend: The legend's names (see :func:`legend_names`).
        title: The figure's title; none if empty.

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


class TrainTime(NamedTuple):
    """A run's time per training iteration, over its logging windows.

    Attributes:
        slowest: The slowest window: its last iteration and s/iter.
        fastest: The fastest window, likewise.
        std: The standard deviation of the windows' s/iter.
        mean: Their mean s/iter.
        iterations: The last iteration logged.
        total_s: About how long the iterations took: ``mean`` times
            ``iterations``.
    """
    slowest: Tuple[int, float]
    fastest: Tuple[int, float]
    std: float
    mean: float
    iterations: int
    total_s: float


def train_time(run: Run, *, include_outliers: bool = False) -> TrainTime:
    """The time per iteration of a run, as mmdet's ``cal_train_time``.

    A training record's ``time`` is the mean over its logging window; a
    record is a training one when its step moves past the ones before it
    (a validation's is the epoch, or the last iteration: see
    :func:`iterations`). The first window (model warm-up) is left out
    unless ``include_outliers``: it would make the mean too slow.

    Raises:
        UserError: A run without training times.
    """
    windows, last = [], None
    for record in run.records:
        step = record['step']
        if (last is None or step > last) and 'time' in record:
            windows.append((step, record['time']))
        last = step if last is None else max(last, step)
    if not include_outliers and len(windows) > 1:
        windows = windows[1:]
    if not windows:
        raise UserError(f'no training times in {run.path}; {LOG_FIX}')
    times = [t for _, t in windows]
    mean = sum(times) / len(times)
    std = (sum((t - mean)**2 for t in times) / len(times))**0.5
    return TrainTime(
        slowest=max(windows, key=lambda w: w[1]),
        fastest=min(windows, key=lambda w: w[1]),
        std=std,
        mean=mean,
        iterations=windows[-1][0],
        total_s=mean * windows[-1][0])
