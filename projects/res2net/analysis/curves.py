# Copyright (c) Res2Net-MMDet contributors. All rights reserved.
"""Training curves and the time per iteration of ``tools/train.py`` runs.

What ``tools/analysis_tools/analyze_logs.py`` does, mmdet's tool of that
name for the log that mmengine's Runner writes: the JSON-lines scalar file
``WORK_DIR/<timestamp>/vis_data/scalars.json`` (see
:mod:`projects.res2net.engine.logs`), one dict per logged training window
or validation, each with its ``step``. A run is named after its work dir,
for the legends.

mmdet 3.3's arguments mean here what they mean there: a LOG may be the
``<timestamp>.json`` beside ``scalars.json`` (the same lines, which mmdet's
docs call ``log.json``); the figure goes to ``--out`` in the format its
extension names (``losses.pdf``), or without ``--out`` into a window;
``--backend`` is matplotlib's backend, ``--style`` one of seaborn's five
styles (matplotlib's ``seaborn-v0_8-*`` sheets: seaborn is not needed),
``--start-epoch`` drops what was logged before that epoch and
``--eval-interval`` checks that each key was logged in that epoch, as
mmdet's tool checks before it plots. One difference stays: each key gets
its own subplot against the iteration (mmdet's draws them in one, the
metrics against the epoch).
"""
import importlib
import io
import os
import os.path as osp
from contextlib import nullcontext
from typing import (Callable, ContextManager, Dict, List, NamedTuple, Optional,
                    Sequence, Tuple)

import matplotlib
from matplotlib.figure import Figure

from ..engine.fileio import write_bytes
from ..engine.logs import VIS_DATA, find_scalars, read_scalars
from ..errors import UserError

# seaborn's styles (mmdet's --style), as matplotlib's style sheets name them.
STYLES = ('darkgrid', 'whitegrid', 'dark', 'white', 'ticks')
# matplotlib's backends that draw into files only, never into a window.
FILE_BACKENDS = ('agg', 'cairo', 'pdf', 'pgf', 'ps', 'svg', 'template')

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


def epochs_logged(run: Run, key: str) -> List[int]:
    """The epochs in which ``run`` logged ``key`` (empty for an
    iteration-based run, whose records carry no epoch).

    A training record carries its ``epoch``; a validation of an
    epoch-based run is logged with ``step=epoch`` (mmengine's default).
    """
    if not any('epoch' in record for record in run.records):
        return []
    return sorted({
        record.get('epoch', record['step'])
        for record in run.records if key in record
    })


def from_epoch(run: Run, epoch: int) -> Run:
    """``run`` from the first record of training epoch ``epoch`` on: what
    mmdet's ``--start-epoch`` names (mmdet 3.3 parses it and draws all).

    Raises:
        UserError: ``epoch`` past the run's last, or above 1 in an
            iteration-based run.
    """
    if epoch <= 1:
        return run
    for i, record in enumerate(run.records):
        if record.get('epoch', 0) >= epoch:
            return run._replace(records=run.records[i:])
    epochs = [r['epoch'] for r in run.records if 'epoch' in r]
    if not epochs:
        raise UserError(f'--start-epoch {epoch}: {run.path} is of an '
                        'iteration-based run (no epochs); drop --start-epoch')
    raise UserError(f'--start-epoch {epoch}: {run.path} ends in epoch '
                    f'{max(epochs)}; pass an epoch up to it')


def check_eval_interval(runs: Sequence[Run], keys: Sequence[str],
                        interval: int) -> None:
    """What mmdet's ``--eval-interval N`` asks: each key logged in epoch N
    (its first validation, for a metric) of every run.

    An iteration-based run is a single epoch to mmdet's tool, so only 1
    fits it.

    Raises:
        UserError: Names the run, the key and the epochs it was logged in.
    """
    for run in runs:
        for key in keys:
            name = resolve_key(key, run)
            epochs = epochs_logged(run, name)
            if not epochs and interval != 1:
                raise UserError(
                    f'--eval-interval {interval}: {run.path} is of an '
                    'iteration-based run, validated by iteration; drop '
                    '--eval-interval')
            if epochs and interval not in epochs:
                raise UserError(
                    f'--eval-interval {interval}: {run.path} logged {name} '
                    f'in epochs {", ".join(map(str, epochs))}, not in '
                    f'epoch {interval}; pass the val_interval it was '
                    'trained with')


def figure_format(out: str) -> str:
    """The image format that ``out``'s extension names (png without one).

    Raises:
        UserError: An extension matplotlib cannot write.
    """
    ext = osp.splitext(out)[1][1:].lower()
    formats = Figure().canvas.get_supported_filetypes()
    if ext and ext not in formats:
        raise UserError(f'--out {out}: matplotlib writes no .{ext} files; '
                        f'end it in one of .{", .".join(sorted(formats))}')
    return ext or 'png'


def curve_figure(runs: Sequence[Run],
                 keys: Sequence[str],
                 *,
                 legend: Sequence[str] = (),
                 title: str = '',
                 new_figure: Callable[..., Figure] = Figure) -> Figure:
    """``keys`` of ``runs`` against the iteration.

    One subplot per key, stacked over a shared iteration axis, so that a
    loss near 0.1 and an AP near 0.5 are both readable; the runs are
    overlaid in each. Sparse series (validations) get markers.

    Args:
        runs: The runs (see :func:`load_runs`).
        keys: The keys as the user wrote them (see :func:`resolve_key`).
        legend: The legend's names (see :func:`legend_names`).
        title: The figure's title; none if empty.
        new_figure: Makes the figure from ``figsize`` and ``layout``:
            matplotlib's ``Figure`` for a file, pyplot's ``figure`` for a
            window.

    Raises:
        UserError: A key that a run does not log, or a bad ``--legend``.
    """
    resolved = {
        (i, key): resolve_key(key, run)
        for i, run in enumerate(runs)
        for key in keys
    }
    names = legend_names(runs, keys, legend)
    fig = new_figure(figsize=(8, 1 + 2.6 * len(keys)), layout='constrained')
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
    return fig


def _style(style: Optional[str]) -> ContextManager:
    """matplotlib's sheet of seaborn's ``style``, or none."""
    if style is None:
        return nullcontext()
    if style not in STYLES:
        raise UserError(f'--style {style}: one of {", ".join(STYLES)} '
                        "(seaborn's styles)")
    return matplotlib.style.context(f'seaborn-v0_8-{style}')


def _show(draw: Callable[[Callable[..., Figure]], Figure],
          backend: Optional[str]) -> None:
    """Draw with pyplot and show the figure in a window, on ``backend``
    (default: matplotlib's).

    Raises:
        UserError: The backend cannot be loaded here, or draws into files
            only (as on a machine without a display).
    """
    # pyplot only here: a file needs no GUI state.
    import matplotlib.pyplot as plt
    if backend is not None:
        try:
            plt.switch_backend(backend)
        except (ImportError, ValueError) as err:
            raise UserError(f'--backend {backend}: {err}; pass --out '
                            'curve.png to write a file instead') from err
    current = plt.get_backend()
    if current.lower() in FILE_BACKENDS:
        raise UserError(f"no --out, and matplotlib's backend {current} "
                        'cannot open a window (no display?): pass --out '
                        'curve.png (or .pdf, .svg)')
    fig = draw(plt.figure)
    try:
        plt.show()
    finally:
        plt.close(fig)


def file_renderer(backend: str, fmt: str) -> Optional[str]:
    """The backend that draws a ``fmt`` file, as pyplot's ``savefig`` after
    mmdet's ``plt.switch_backend(backend)`` picks it: a file backend where
    it writes that format (``cairo`` a png, ``pdf`` a pdf), else None,
    matplotlib's for the format (a window backend such as ``TkAgg`` draws
    a png with Agg, ``agg`` an svg with the svg backend).

    Raises:
        UserError: A backend matplotlib does not know, or a file backend
            that does not load here.
    """
    if backend.lower() not in FILE_BACKENDS:
        try:  # a window's backend: its name at least
            matplotlib.rcsetup.validate_backend(backend)
        except ValueError as err:
            raise UserError(f'--backend {backend}: {err}') from err
        return None
    module = f'matplotlib.backends.backend_{backend.lower()}'
    try:
        canvas = importlib.import_module(module).FigureCanvas
    except ImportError as err:
        raise UserError(f'--backend {backend}: matplotlib cannot load it '
                        f'here ({err})') from err
    return backend if hasattr(canvas, f'print_{fmt}') else None


def plot_curve(runs: Sequence[Run],
               keys: Sequence[str],
               out: Optional[str],
               *,
               legend: Sequence[str] = (),
               title: str = '',
               style: Optional[str] = None,
               backend: Optional[str] = None) -> None:
    """Plot ``keys`` of ``runs`` against the iteration (see
    :func:`curve_figure`) into ``out``, or into a window.

    Args:
        runs: The runs (see :func:`load_runs`).
        keys: The keys as the user wrote them (see :func:`resolve_key`).
        out: The file to write, atomically, in the format its extension
            names (:func:`figure_format`); None: show it in a window.
        legend: The legend's names (see :func:`legend_names`).
        title: The figure's title; none if empty.
        style: One of :data:`STYLES`, or None for matplotlib's default.
        backend: matplotlib's backend: the window's, or a file's where it
            writes the format (:func:`file_renderer`); None: the default.

    Raises:
        UserError: A key that a run does not log, a bad ``--legend``,
            ``--style``, ``--backend`` or ``--out``, or no ``--out`` where
            no window can open. Nothing is written then.
    """
    fmt = figure_format(out) if out is not None else None
    renderer = file_renderer(backend, fmt) if fmt and backend else None

    def draw(new_figure: Callable[..., Figure]) -> Figure:
        return curve_figure(
            runs, keys, legend=legend, title=title, new_figure=new_figure)

    with _style(style):
        if out is None:
            _show(draw, backend)
            return
        # Drawn into memory first: nothing is on disk until it is whole.
        buffer = io.BytesIO()
        draw(Figure).savefig(buffer, format=fmt, dpi=100, backend=renderer)
    write_bytes(out, buffer.getvalue())


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
        epochs: An epoch-based run's mean s/iter per epoch, as mmdet's
            ``cal_train_time`` takes them (each epoch's first window left
            out unless outliers are included); empty for an
            iteration-based run.
    """
    slowest: Tuple[int, float]
    fastest: Tuple[int, float]
    std: float
    mean: float
    iterations: int
    total_s: float
    epochs: Tuple[Tuple[int, float], ...] = ()

    @property
    def slowest_epoch(self) -> Tuple[int, float]:
        """The epoch with the slowest mean, and that mean (mmdet's)."""
        return max(self.epochs, key=lambda epoch: epoch[1])

    @property
    def fastest_epoch(self) -> Tuple[int, float]:
        """The epoch with the fastest mean, and that mean (mmdet's)."""
        return min(self.epochs, key=lambda epoch: epoch[1])

    @property
    def epoch_std(self) -> float:
        """The standard deviation of the epochs' means (mmdet's)."""
        means = [t for _, t in self.epochs]
        mean = sum(means) / len(means)
        return (sum((t - mean)**2 for t in means) / len(means))**0.5


def train_time(run: Run, *, include_outliers: bool = False) -> TrainTime:
    """The time per iteration of a run, as mmdet's ``cal_train_time``.

    A training record's ``time`` is the mean over its logging window; a
    record is a training one when its step moves past the ones before it
    (a validation's is the epoch, or the last iteration: see
    :func:`iterations`). Unless ``include_outliers``, the first window
    (model warm-up) is left out, and in an epoch-based run, as mmdet does,
    the first of every epoch (its dataloader starting anew): they would
    make the mean too slow. An epoch with one window keeps it.

    Raises:
        UserError: A run without training times.
    """
    windows, last = [], None
    for record in run.records:
        step = record['step']
        if (last is None or step > last) and 'time' in record:
            windows.append((step, record['time'], record.get('epoch')))
        last = step if last is None else max(last, step)
    if not windows:
        raise UserError(f'no training times in {run.path}; {LOG_FIX}')
    by_epoch: Dict[Optional[int], List[Tuple[int, float]]] = {}
    for step, time, epoch in windows:
        by_epoch.setdefault(epoch, []).append((step, time))
    for epoch, group in by_epoch.items():
        if not include_outliers and len(group) > 1:
            by_epoch[epoch] = group[1:]
    kept = [window for group in by_epoch.values() for window in group]
    times = [t for _, t in kept]
    mean = sum(times) / len(times)
    std = (sum((t - mean)**2 for t in times) / len(times))**0.5
    epochs = tuple((epoch, sum(t for _, t in group) / len(group))
                   for epoch, group in sorted(
                       (e, g) for e, g in by_epoch.items() if e is not None))
    return TrainTime(
        slowest=max(kept, key=lambda w: w[1]),
        fastest=min(kept, key=lambda w: w[1]),
        std=std,
        mean=mean,
        iterations=windows[-1][0],
        total_s=mean * windows[-1][0],
        epochs=epochs)
