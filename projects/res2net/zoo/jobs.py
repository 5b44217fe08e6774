# Copyright (c) Res2Net-MMDet contributors. All rights reserved.
"""The model zoo on a Slurm cluster: submit, follow, gather and publish.

``tools/misc/zoo_slurm.py`` parses its arguments and calls this module.

:func:`submit_jobs` sends one batch job per config: train (resuming), test
and benchmark, the steps of ``tools/misc/zoo_demo.py``
(:mod:`projects.res2net.zoo.runs`), in ``WORK_DIR/<config name>``, sized by
mmdet's Slurm variables (PARTITION, GPUS, GPUS_PER_NODE, CPUS_PER_TASK,
SRUN_ARGS, GRES) as ``tools/slurm_train.sh`` reads them
(:mod:`projects.res2net.zoo.slurm`). It prints each job id and log and
returns at once; :func:`follow` follows the jobs. Submitting again skips
finished runs and jobs still queued or running, and resumes runs that were
cut off: each job is recorded in its run's work dir
(:data:`~projects.res2net.paths.ZOO_JOB_JSON`), and where a run stands is
read from the work dir itself. :func:`show_status` shows (or follows) the
jobs; a job that ended without finishing its run is named with its log's
tail (:func:`report`). :func:`gather` publishes each finished run's
checkpoint (``tools/model_converters/publish_model.py``) and prints the
model-zoo table of all runs (``tools/analysis_tools/benchmark_table.py``),
unfinished ones as "–" with the reason on stderr, and writes the finished
ones into ``metafile.yml``.

(The commands: ``tools/misc/zoo_slurm.py --help``.)
"""
import os
import os.path as osp
import shutil
import sys
import time
from datetime import datetime
from typing import Dict, List, Optional, Sequence, Tuple

from ..datasets.demo_data import generate_demo_dataset
from ..engine.cli import load_config, parse_cfg_options
from ..engine.fileio import read_json, write_json, write_text
from ..errors import UserError
from ..paths import REPO_ROOT, ZOO_JOB_JSON
from .demo import DemoSize
from .publish import publish, published_file
from .runs import Step, ZooRun, progress, steps, zoo_run
from .slurm import (ACTIVE, JobState, Resources, current_step, job_script,
                    job_state, log_tail, submit)
from .table import (REFERENCE, format_table, missing_lines, model_name,
                    read_run, unfinished_row, update_metafile)

# A submitted run: what submit_jobs wrote into WORK_DIR/<config name>/
# ZOO_JOB_JSON (the keys below, and script, steps, submitted).
Job = Dict[str, object]

_RECORD_KEYS = frozenset({
    'config', 'work_dir', 'checkpoint', 'options', 'benchmark_args', 'job_id',
    'log'
})
_WHAT = 'a record of zoo_slurm.py submit'
_FIX = 'delete it and submit again'


def run_of(job: Job) -> ZooRun:
    """The run that ``job`` does, as it was submitted."""
    return ZooRun(job['config'], job['work_dir'], job['checkpoint'],
                  tuple(job['options']), tuple(job['benchmark_args']))


def read_job(work_dir: str) -> Optional[Job]:
    """The job that :func:`submit_jobs` recorded in a run's work dir, if
    any.

    Raises:
        UserError: The record is damaged or lacks a key; deleting it and
            submitting again mends it.
    """
    path = osp.join(work_dir, ZOO_JOB_JSON)
    job = read_json(path, what=_WHAT, fix=_FIX)
    if job is None:
        return None
    try:
        lacking = _RECORD_KEYS - set(job)
    except TypeError as err:
        raise UserError(f'{path} is not {_WHAT} ({err}); {_FIX}') from err
    if lacking:
        raise UserError(f'{path} is not {_WHAT} (no '
                        f'{", ".join(sorted(lacking))}); {_FIX}')
    return job


def write_job(job: Job) -> None:
    """Record ``job`` in its run's work dir, whole or not at all."""
    write_json(osp.join(job['work_dir'], ZOO_JOB_JSON), job)


def jobs_in(work_root: str) -> List[Job]:
    """The records of the jobs submitted into ``work_root``, in the order of
    the zoo table (other configs after, by name).

    Raises:
        UserError: There are none.
    """
    jobs = []
    for name in sorted(os.listdir(work_root)) if osp.isdir(work_root) else ():
        job = read_job(osp.join(work_root, name))
        if job is not None:
            jobs.append(job)
    if not jobs:
        raise UserError(f'no jobs in {work_root}: submit them first with '
                        'python tools/misc/zoo_slurm.py submit CONFIG... '
                        f'--work-dir {work_root}')
    order = [row.name for row in REFERENCE]

    def key(job: Job) -> Tuple[int, str]:
        name = run_of(job).name
        return order.index(name) if name in order else len(order), name

    return sorted(jobs, key=key)


def active(job: Optional[Job]) -> Optional[JobState]:
    """The state of a recorded job that may still run, else None."""
    if job is None:
        return None
    state = job_state(job['job_id'])
    return state if state is not None and state.active else None


def submit_jobs(
    configs: Sequence[str],
    *,
    partition: Optional[str],
    work_dir: str,
    cfg_options: Sequence[str] = (),
    num_images: Optional[int] = None,
    warmup: Optional[int] = None,
    demo_data: Optional[str] = None,
    demo_size: DemoSize = DemoSize()
) -> List[Job]:
    """Submit one batch job per config into ``work_dir``, printing each.

    Every config is read (and the duplicates refused) before anything is
    submitted, so that a mistake submits nothing. A run already finished is
    skipped, one whose job is still queued or running is followed as it is,
    and one cut off resumes: only the steps left are submitted.

    Args:
        configs: The model-zoo configs.
        partition: The Slurm partition.
        work_dir: One work dir per config below it.
        cfg_options: Config overrides of every step of every job.
        num_images: Images ``benchmark.py`` times (None: its default; with
            ``demo_data``, ``demo_size.test_images``).
        warmup: Images ``benchmark.py`` runs first (None: its default).
        demo_data: Try the workflow on the demo data in this dir first
            (generated if it does not exist): runs of ``demo_size``, as
            ``tools/misc/zoo_demo.py`` runs them.
        demo_size: The size of the runs on ``demo_data``.

    Returns:
        The jobs to follow: those submitted and those still active.

    Raises:
        UserError: No partition, a bad Slurm variable, an unreadable config,
            a config given twice, or sbatch refused a job.
    """
    if not partition:
        raise UserError('no partition: pass --partition NAME or set '
                        'PARTITION, as for tools/slurm_train.sh')
    resources = Resources.from_environ(partition)
    if demo_data:
        num_images = num_images or demo_size.test_images
    bench = []
    if num_images is not None:
        bench += ['--num-images', str(num_images)]
    if warmup is not None:
        bench += ['--warmup', str(warmup)]
    work_root = osp.abspath(work_dir)
    runs = []
    for config in configs:
        options = demo_size.options(osp.abspath(demo_data),
                                    config) if demo_data else []
        runs.append(
            zoo_run(config, work_root, [*options, *cfg_options], bench)[0])
    names = [run.name for run in runs]
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise UserError(f'{", ".join(twice)} given twice: each config has '
                        'one work dir; pass it once')
    if demo_data and not osp.isdir(demo_data):
        generate_demo_dataset(demo_data)
    return [
        job for job in (_submit_run(run, resources) for run in runs)
        if job is not None
    ]


def _submit_run(run: ZooRun, resources: Resources) -> Optional[Job]:
    """Submit what is left of ``run``, unless its job is active or it is
    finished; the job to follow, if any."""
    earlier = read_job(run.work_dir)
    state = active(earlier)
    if state is not None:
        print(
            f'{run.name}: job {earlier["job_id"]} is {state.state}; '
            'not submitted again',
            flush=True)
        return earlier
    done = progress(run)
    if done.finished:
        print(f'{run.name}: {done.describe()} in {run.work_dir}; '
              'skipped',
              flush=True)
        return None
    left = steps(run)[done.done:]
    job_id, script = _sbatch(run, left, resources)
    job = dict(
        config=run.config,
        work_dir=run.work_dir,
        checkpoint=run.checkpoint,
        options=list(run.options),
        benchmark_args=list(run.benchmark_args),
        job_id=job_id,
        log=osp.join(run.work_dir, f'slurm-{job_id}.log'),
        script=script,
        steps=[step.tool for step in left],
        submitted=datetime.now().isoformat(timespec='seconds'))
    write_job(job)
    what = ', '.join(step.tool for step in left)
    if done.resume_from:
        what += f'; training resumes from {done.resume_from}'
    print(f'{run.name}: submitted job {job_id} ({what}); log '
          f'{job["log"]}',
          flush=True)
    return job


def _sbatch(run: ZooRun, left: List[Step],
            resources: Resources) -> Tuple[str, str]:
    """Write the job script of ``left`` into the run's work dir and sbatch
    it: the job id and the script. A refused job leaves nothing behind."""
    created = None  # the outermost dir made here, if any
    if not osp.isdir(run.work_dir):
        created = run.work_dir
        while not osp.isdir(osp.dirname(created)):
            created = osp.dirname(created)
    os.makedirs(run.work_dir, exist_ok=True)
    script = osp.join(run.work_dir, 'zoo_job.sh')
    write_text(
        script,
        job_script(
            name=run.name,
            steps=left,
            resources=resources,
            repo=str(REPO_ROOT),
            log=osp.join(run.work_dir, 'slurm-%j.log'),
            python=sys.executable))
    try:
        return submit(script), script
    except BaseException:
        os.remove(script)
        if created:
            shutil.rmtree(created)
        raise


def _elapsed(seconds: float) -> str:
    minutes, seconds = divmod(int(seconds), 60)
    return f'{minutes // 60:d}:{minutes % 60:02d}:{seconds:02d}'


def look(job: Job) -> Tuple[str, str, str]:
    """A job now: its state, its run time, and what else to show (the step
    it is in, or why it waits; how often it was requeued)."""
    state = job_state(job['job_id'])
    if state is None:  # slurmctld forgot it: the work dir tells
        finished = progress(run_of(job)).finished
        return ('COMPLETED' if finished else 'GONE'), '', ''
    notes = []
    if state.state == 'RUNNING':
        notes.append(current_step(job['log']) or '')
    elif state.state == 'PENDING' and state.reason not in ('', 'None'):
        notes.append(f'({state.reason})')
    if state.restarts:
        times = 'time' if state.restarts == 1 else 'times'
        notes.append(f'requeued {state.restarts} {times}')
    return state.state, state.elapsed, '  '.join(n for n in notes if n)


def _line(job: Job, seen: Tuple[str, str, str], width: int) -> str:
    state, elapsed, note = seen
    return (f'{run_of(job).name:<{width}}  job {job["job_id"]:>6}  '
            f'{state:<10} {elapsed:>8}  {note}').rstrip()


def follow(jobs: List[Job], poll: float = 30) -> None:
    """Show each job's state when it changes, until all have ended.

    Each line starts with the time since following began, then the run,
    the job, its state, its run time, and the step it is in (or why it
    waits). Ctrl-C stops following, not the jobs (exit status 130).

    Raises:
        UserError: Some jobs ended without finishing their run; each is
            named above with the tail of its log.
    """
    if not jobs:
        return
    try:
        _follow_until_ended(jobs, poll)
    except KeyboardInterrupt:
        root = osp.dirname(jobs[0]['work_dir'])
        print(
            '\nstopped following; the jobs go on. Follow them again with: '
            f'python tools/misc/zoo_slurm.py status --work-dir {root} --wait',
            file=sys.stderr)
        sys.exit(130)
    report(jobs)


def _follow_until_ended(jobs: List[Job], poll: float) -> None:
    start = time.monotonic()
    shown: Dict[str, Tuple[str, str]] = {}
    width = max(len(run_of(job).name) for job in jobs)
    while True:
        still = 0
        for job in jobs:
            seen = look(job)
            still += seen[0] in ACTIVE
            # A new line when the state or the step changes, not the time.
            if shown.get(job['job_id']) != (seen[0], seen[2]):
                shown[job['job_id']] = (seen[0], seen[2])
                print(
                    f'[{_elapsed(time.monotonic() - start)}] ' +
                    _line(job, seen, width),
                    flush=True)
        if not still:
            break
        time.sleep(poll)


def report(jobs: List[Job]) -> None:
    """Name each job whose run did not finish, with its log's tail.

    Raises:
        UserError: There are such jobs.
    """
    failed = []
    for job in jobs:
        run = run_of(job)
        done = progress(run)
        if done.finished:
            continue
        state = job_state(job['job_id'])
        if state is not None and state.active:
            continue
        ended = state.state if state else 'ended (Slurm no longer knows it)'
        failed.append(f'{run.name} (job {job["job_id"]} {ended})')
        print(
            f'{run.name}: job {job["job_id"]} {ended}; the run is '
            f'{done.describe()}; the last lines of {job["log"]}:\n' +
            log_tail(job['log']),
            file=sys.stderr)
    if failed:
        raise UserError(
            f'{len(failed)} of {len(jobs)} runs did not finish: '
            f'{", ".join(failed)}; their logs are above. Mend the cause and '
            'submit again: finished runs are skipped, cut-off ones resume')
    print(f'finished: {", ".join(run_of(job).name for job in jobs)}; '
          'gather with: python tools/misc/zoo_slurm.py gather --work-dir '
          f'{osp.dirname(jobs[0]["work_dir"])}')


def show_status(work_dir: str,
                *,
                wait: bool = False,
                poll: float = 30) -> None:
    """Print a line per job submitted into ``work_dir`` (``wait``: follow
    them until all have ended); once none is active, :func:`report`."""
    jobs = jobs_in(work_dir)
    if wait:
        follow(jobs, poll)
        return
    width = max(len(run_of(job).name) for job in jobs)
    for job in jobs:
        print(_line(job, look(job), width))
    if not any(active(job) for job in jobs):
        report(jobs)


def gather(work_dir: str,
           *,
           publish_dir: Optional[str] = None,
           metafile: Optional[str] = None) -> None:
    """Publish the finished runs, print the table, write the metafile.

    Each finished run's last checkpoint is published (once) into
    ``publish_dir`` (default ``WORK_DIR/published``); the model-zoo table of
    all runs goes to stdout, an unfinished run as "–" with the reason on
    stderr; the finished ones are written into ``metafile`` (default
    ``WORK_DIR/metafile.yml``). Without Slurm's commands (gathering on
    another machine) the work dirs alone tell which runs finished.
    """
    jobs = jobs_in(work_dir)
    publish_dir = publish_dir or osp.join(work_dir, 'published')
    metafile = metafile or osp.join(work_dir, 'metafile.yml')
    rows, finished = [], []
    for job in jobs:
        run = run_of(job)
        cfg = load_config(run.config, parse_cfg_options(run.options))
        done = progress(run)
        state = active(job) if shutil.which('scontrol') else None
        if state is not None:
            why = (f'job {job["job_id"]} is {state.state}; gather again when '
                   'it has ended')
        elif not done.finished:
            why = (f'job {job["job_id"]} ended and the run is '
                   f'{done.describe()}; its log: {job["log"]}; submit again '
                   'to finish it')
        else:
            why = None
        if why is not None:
            rows.append(unfinished_row(run.config, cfg, why))
            continue
        row = read_run(run.work_dir)
        if published_file(run.checkpoint) is None:
            published = publish(
                run.checkpoint, osp.join(publish_dir,
                                         f'{model_name(row)}.pth'))
            print(f'{run.name}: published {published.file}', file=sys.stderr)
            row = read_run(run.work_dir)
        rows.append(row)
        finished.append(row)
    for line in missing_lines(rows):
        print(line, file=sys.stderr)
    print(format_table(rows))
    if finished:
        update_metafile(metafile, finished)
        print(
            f'{len(finished)} of {len(rows)} models written to {metafile}',
            file=sys.stderr)
