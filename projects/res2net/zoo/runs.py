# Copyright (c) Res2Net-MMDet contributors. All rights reserved.
"""Model-zoo runs: a config trained, tested and benchmarked in its work dir.

A run is three steps of the tools: ``tools/train.py`` (with ``--resume``:
a run that was cut off goes on from its last checkpoint, a new one starts
afresh), ``tools/test.py`` on the last checkpoint of the schedule, and
``tools/analysis_tools/benchmark.py`` on it. ``tools/misc/zoo_demo.py`` runs
the steps here, one after another; ``tools/misc/zoo_slurm.py`` writes them
into a Slurm batch job per config. Where a run stands is read from its work
dir alone (:func:`progress`), so that running the steps again does only
what is left.
"""
import json
import os.path as osp
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

from mmengine.config import Config

from ..engine.cli import load_config, parse_cfg_options
from ..engine.preflight import latest_checkpoint
from ..paths import BENCHMARK_JSON, METRICS_JSON

TRAIN = 'train.py'
TEST = 'test.py'
BENCHMARK = 'analysis_tools/benchmark.py'


@dataclass(frozen=True)
class Step:
    """One tool run of a model-zoo run.

    Attributes:
        tool: The script under ``tools/``.
        args: Its arguments.
        distributed: Whether it runs as one process per GPU (training and
            testing) or as one process (the benchmark times batch 1).
    """

    tool: str
    args: Tuple[str, ...]
    distributed: bool


@dataclass(frozen=True)
class ZooRun:
    """A config's run in its own work dir.

    Attributes:
        config: The config file.
        work_dir: ``<work root>/<config name>``.
        checkpoint: The checkpoint that the end of the schedule writes
            (``epoch_<max_epochs>.pth`` or ``iter_<max_iters>.pth``), which
            is tested and benchmarked.
        options: ``--cfg-options`` (``key=value``) of every step.
        benchmark_args: What ``benchmark.py`` gets besides them.
    """

    config: str
    work_dir: str
    checkpoint: str
    options: Tuple[str, ...] = ()
    benchmark_args: Tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return osp.splitext(osp.basename(self.config))[0]


def final_checkpoint(cfg: Config, work_dir: str) -> str:
    """The checkpoint that the last step of ``cfg``'s schedule writes."""
    loop = cfg.get('train_cfg') or {}
    if 'max_epochs' in loop:
        return osp.join(work_dir, f'epoch_{loop["max_epochs"]}.pth')
    return osp.join(work_dir, f'iter_{loop["max_iters"]}.pth')


def zoo_run(
    config: str,
    work_root: str,
    options: Sequence[str] = (),
    benchmark_args: Sequence[str] = ()
) -> Tuple[ZooRun, Config]:
    """The run of ``config`` under ``work_root``, and its config.

    Raises:
        UserError: The config cannot be read, or an option is not
            ``key=value``.
    """
    cfg = load_config(config, parse_cfg_options(options))
    work_dir = osp.join(work_root, osp.splitext(osp.basename(config))[0])
    run = ZooRun(config, work_dir, final_checkpoint(cfg, work_dir),
                 tuple(options), tuple(benchmark_args))
    return run, cfg


def steps(run: ZooRun) -> List[Step]:
    """Train (resuming), test, benchmark: the whole run."""
    cfg_options = ('--cfg-options', *run.options) if run.options else ()
    return [
        Step(TRAIN, (run.config, '--work-dir', run.work_dir, '--resume',
                     *cfg_options), True),
        Step(TEST, (run.config, run.checkpoint, '--work-dir', run.work_dir,
                    *cfg_options), True),
        Step(BENCHMARK, (run.config, run.checkpoint, '--work-dir',
                         run.work_dir, *run.benchmark_args, *cfg_options),
             False),
    ]


@dataclass(frozen=True)
class Progress:
    """Where a run stands, as its work dir shows it.

    Attributes:
        done: How many of the three steps are done: 0 (nothing, or cut off
            in training), 1 (trained), 2 (tested), 3 (benchmarked too:
            finished); ``steps(run)[done:]`` are the ones left.
        resume_from: The checkpoint that training would go on from, for a
            run cut off in training.
    """

    done: int
    resume_from: Optional[str] = None

    @property
    def finished(self) -> bool:
        return self.done == 3

    def describe(self) -> str:
        if self.finished:
            return 'finished (trained, tested, benchmarked)'
        if self.done == 2:
            return 'trained and tested, not benchmarked'
        if self.done == 1:
            return 'trained, not tested'
        if self.resume_from:
            last = osp.basename(self.resume_from)
            return f'cut off in training, after {last}'
        return 'not started'


def _result_of(path: str) -> Optional[str]:
    """The checkpoint that a ``metrics.json``/``benchmark.json`` is of."""
    if not osp.isfile(path):
        return None
    try:
        with open(path, encoding='utf-8') as f:
            return json.load(f).get('checkpoint')
    except (OSError, ValueError, AttributeError):
        return None  # damaged: the step is run again


def progress(run: ZooRun) -> Progress:
    """Where ``run`` stands: the steps done, from its work dir."""
    if not osp.isfile(run.checkpoint):
        return Progress(0, latest_checkpoint(run.work_dir))
    tested = _result_of(osp.join(run.work_dir, METRICS_JSON))
    if tested != run.checkpoint:
        return Progress(1)
    benchmarked = _result_of(osp.join(run.work_dir, BENCHMARK_JSON))
    return Progress(3 if benchmarked == run.checkpoint else 2)
