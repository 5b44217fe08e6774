# Copyright (c) Res2Net-MMDet contributors. All rights reserved.
"""The model-zoo configs run on the demo data, here, and their zoo table.

``tools/misc/zoo_demo.py`` parses its arguments and calls
:func:`run_demo_zoo`. For each config: ``tools/train.py`` (from scratch,
short, small images), ``tools/test.py`` on the last checkpoint,
``tools/analysis_tools/benchmark.py`` on it, each into
``WORK_DIR/<config name>``; then ``tools/analysis_tools/benchmark_table.py``
over all of them, which also writes ``WORK_DIR/metafile.yml``. The runs say
nothing about COCO accuracy: they show the whole path from a config to a
table row on any machine. These are the steps that
``tools/misc/zoo_slurm.py`` submits as Slurm jobs
(:mod:`projects.res2net.zoo.runs`, :mod:`projects.res2net.zoo.jobs`), at the
same :class:`DemoSize` with its ``--demo-data``, and as there, running it
again does only what is left: a finished run is kept, one that was cut off
resumes.

Example:
    python tools/misc/zoo_demo.py --work-dir work_dirs/zoo_demo
"""
import os.path as osp
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import List, Sequence

from ..datasets.demo_data import generate_demo_dataset
from ..engine.cli import load_config
from ..engine.forked import run_script
from ..errors import UserError
from ..paths import TOOLS_DIR
from .runs import progress, steps, zoo_run
from .table import demo_run_options


@dataclass(frozen=True)
class DemoSize:
    """The size of a demo-data run: short, from scratch, small images.

    Attributes:
        epochs: Epochs of training.
        train_images: Train on the first N demo images.
        test_images: Test (and benchmark) on the first N validation images.
        scale: The image side.
    """

    epochs: int = 1
    train_images: int = 8
    test_images: int = 8
    scale: int = 128

    def options(self, data_root: str, config: str) -> List[str]:
        """The ``--cfg-options`` of every step of a run of ``config`` on
        ``data_root``."""
        return demo_run_options(
            data_root,
            model=load_config(config).model,
            scale=self.scale,
            epochs=self.epochs,
            train_images=self.train_images,
            test_images=self.test_images)


def check_demo_config(config: str) -> None:
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


class StepRunner:
    """Runs the tools one after another, saying which step of how many.

    Each step prints ``[k/n] python tools/...`` and then its time; a tool's
    own output is shown only if it fails, or when the step is not quiet.
    Each step is a process of its own, forked from a server that imported
    torch and mmdet once (:mod:`projects.res2net.engine.forked`): a step
    does not pay for them again.
    """

    def __init__(self, total: int) -> None:
        self.total = total
        self.done = 0

    def run(self, tool: str, *args: str, quiet: bool = True) -> None:
        """Run ``python tools/<tool> ARGS`` in a process of its own.

        Raises:
            UserError: The tool failed; its output's end is printed first.
        """
        self.done += 1
        path = str(TOOLS_DIR / tool)
        print(
            f'[{self.done}/{self.total}] python tools/{tool} ' +
            ' '.join(args[:1]),
            flush=True)
        start = time.monotonic()
        with tempfile.TemporaryDirectory() as tmp:
            log = osp.join(tmp, 'output.log')
            code = run_script(path, args, log=log)
            with open(log, errors='replace') as f:
                output = f.read()
        if not quiet:
            print(output, end='', flush=True)
        if code != 0:
            if quiet:
                print(output[-5000:], file=sys.stderr)
            raise UserError(f'step {self.done}, tools/{tool}, failed (exit '
                            f'{code}); its output is above. The command: ' +
                            ' '.join([path, *args]))
        print(f'      done in {time.monotonic() - start:.0f} s', flush=True)


def run_demo_zoo(configs: Sequence[str],
                 *,
                 data: str,
                 work_dir: str,
                 size: DemoSize = DemoSize(),
                 warmup: int = 5) -> None:
    """Run what is left of each config's demo run, then print the table.

    Every config is checked before any run; the demo data is generated if
    ``data`` does not exist.

    Args:
        configs: Epoch-based model-zoo configs.
        data: The demo data.
        work_dir: One work dir per config below it; the metafile in it.
        size: The size of the runs.
        warmup: Images ``benchmark.py`` runs before it times.

    Raises:
        UserError: A config does not fit the demo options, or a step failed.
    """
    for config in configs:
        check_demo_config(config)
    if not osp.isdir(data):
        generate_demo_dataset(data)
    bench = ('--num-images', str(size.test_images), '--warmup', str(warmup))
    runs = [
        zoo_run(config, work_dir, size.options(data, config), bench)[0]
        for config in configs
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
    runner = StepRunner(total=sum(map(len, left.values())) + 1)
    for run in runs:
        for step in left[run.name]:
            runner.run(step.tool, *step.args)
    runner.run(
        'analysis_tools/benchmark_table.py',
        *(run.work_dir for run in runs),
        '--metafile',
        osp.join(work_dir, 'metafile.yml'),
        quiet=False)
