# Copyright (c) Res2Net-MMDet contributors. All rights reserved.
"""The model zoo on a Slurm cluster: submit, follow, gather and publish.

``submit`` sends one batch job per config: train (resuming), test and
benchmark, the steps of ``tools/misc/zoo_demo.py``
(:mod:`projects.res2net.zoo_runs`), in ``WORK_DIR/<config name>``, sized by
mmdet's Slurm variables (PARTITION, GPUS, GPUS_PER_NODE, CPUS_PER_TASK,
SRUN_ARGS, GRES) as ``tools/slurm_train.sh`` reads them. It prints each job
id and log and returns at once; ``--wait`` follows the jobs. Submitting
again skips finished runs and jobs still queued or running, and resumes
runs that were cut off. ``status`` shows (``--wait``: follows) the jobs;
a job that ended without finishing its run is named with its log's tail.
``gather`` publishes each finished run's checkpoint
(``tools/model_converters/publish_model.py``) and prints the model-zoo
table of all runs (``tools/analysis_tools/benchmark_table.py``), unfinished
ones as "–" with the reason on stderr, and writes the finished ones into
``metafile.yml``.

Example:
    PARTITION=gpu GPUS=8 python tools/misc/zoo_slurm.py submit \\
        configs/faster_rcnn_r2_101_fpn_2x.py configs/htc_r2_101_fpn_20e.py \\
        --work-dir work_dirs/zoo
    python tools/misc/zoo_slurm.py status --work-dir work_dirs/zoo --wait
    python tools/misc/zoo_slurm.py gather --work-dir work_dirs/zoo
"""
import argparse
import json
import os
import os.path as osp
import shutil
import sys
import time
from datetime import datetime
from typing import Dict, List, Optional, Tuple

from projects.res2net.cli import (example_epilog, load_config,
                                  parse_cfg_options, run_tool, tool_parser)
from projects.res2net.demo_data import generate_demo_dataset
from projects.res2net.errors import UserError
from projects.res2net.fileio import write_atomically
from projects.res2net.publish import publish, published_file
from projects.res2net.slurm import (ACTIVE, JobState, Resources, current_step,
                                    job_script, job_state, log_tail, submit)
from projects.res2net.zoo import (REFERENCE, demo_run_options, format_table,
                                  missing_lines, model_name, read_run,
                                  unfinished_row, update_metafile)
from projects.res2net.zoo_runs import Step, ZooRun, progress, steps, zoo_run

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
RECORD = 'zoo_job.json'
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
        'Finished runs and queued or running jobs are skipped; cut-off runs '
        'resume.',
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
        'time, the step each is in; a job that ended without finishing its '
        'run is named with the tail of its log (exit status 2).',
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


# A submitted run: what submit wrote into WORK_DIR/<config name>/RECORD.
Job = Dict[str, object]


def _run_of(job: Job) -> ZooRun:
    return ZooRun(job['config'], job['work_dir'], job['checkpoint'],
                  tuple(job['options']), tuple(job['benchmark_args']))


_RECORD_KEYS = frozenset({
    'config', 'work_dir', 'checkpoint', 'options', 'benchmark_args', 'job_id',
    'log'
})


def _read_record(work_dir: str) -> Optional[Job]:
    """The job that submit recorded in a run's work dir, if any."""
    path = osp.join(work_dir, RECORD)
    if not osp.isfile(path):
        return None
    try:
        with open(path, encoding='utf-8') as f:
            job = json.load(f)
        lacking = _RECORD_KEYS - set(job)
        why = f'no {", ".join(sorted(lacking))}' if lacking else None
    except (OSError, ValueError, TypeError) as err:
        why = str(err)
    if why:
        raise UserError(f'{path} is not a record of zoo_slurm.py submit '
                        f'({why}); delete it and submit again')
    return job


def _jobs(work_root: str) -> List[Job]:
    """The records of the jobs submitted into ``work_root``, zoo order."""
    jobs = []
    for name in sorted(os.listdir(work_root)) if osp.isdir(work_root) else ():
        job = _read_record(osp.join(work_root, name))
        if job is not None:
            jobs.append(job)
    if not jobs:
        raise UserError(f'no jobs in {work_root}: submit them first with '
                        'python tools/misc/zoo_slurm.py submit CONFIG... '
                        f'--work-dir {work_root}')
    order = [row.name for row in REFERENCE]
    return sorted(
        jobs,
        key=lambda job:
        (order.index(_run_of(job).name)
         if _run_of(job).name in order else len(order), _run_of(job).name))


def _write_record(job: Job) -> None:

    def write(tmp: str) -> None:
        with open(tmp, 'w', encoding='utf-8') as f:
            json.dump(job, f, indent=2)

    write_atomically(osp.join(job['work_dir'], RECORD), write)


def _active(job: Optional[Job]) -> Optional[JobState]:
    """The state of a recorded job that may still run, else None."""
    if job is None:
        return None
    state = job_state(job['job_id'])
    return state if state is not None and state.active else None


def submit_command(args: argparse.Namespace) -> None:
    if not args.partition:
        raise UserError('no partition: pass --partition NAME or set '
                        'PARTITION, as for tools/slurm_train.sh')
    resources = Resources.from_environ(args.partition)
    options = list(args.cfg_options)
    num_images = args.num_images
    if args.demo_data:
        options = demo_run_options(
            osp.abspath(args.demo_data),
            scale=args.scale,
            epochs=args.epochs,
            train_images=args.train_images,
            test_images=args.test_images) + options
        num_images = num_images or args.test_images
    bench = []
    if num_images is not None:
        bench += ['--num-images', str(num_images)]
    if args.warmup is not None:
        bench += ['--warmup', str(args.warmup)]
    work_root = osp.abspath(args.work_dir)
    # Every config is read before anything is submitted.
    runs = [
        zoo_run(config, work_root, options, bench)[0]
        for config in args.configs
    ]
    names = [run.name for run in runs]
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise UserError(f'{", ".join(twice)} given twice: each config has '
                        'one work dir; pass it once')
    if args.demo_data and not osp.isdir(args.demo_data):
        generate_demo_dataset(args.demo_data)

    followed: List[Job] = []
    for run in runs:
        earlier = _read_record(run.work_dir)
        state = _active(earlier)
        if state is not None:
            print(
                f'{run.name}: job {earlier["job_id"]} is {state.state}; '
                'not submitted again',
                flush=True)
            followed.append(earlier)
            continue
        done = progress(run)
        if done.finished:
            print(
                f'{run.name}: {done.describe()} in {run.work_dir}; '
                'skipped',
                flush=True)
            continue
        left = steps(run)[done.done:]
        job_id, script = _submit(run, left, resources)
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
        _write_record(job)
        followed.append(job)
        what = ', '.join(step.tool for step in left)
        if done.resume_from:
            what += f'; training resumes from {done.resume_from}'
        print(
            f'{run.name}: submitted job {job_id} ({what}); log '
            f'{job["log"]}',
            flush=True)
    if args.wait:
        follow(followed, args.poll)
    elif followed:
        print('follow them with: python tools/misc/zoo_slurm.py status '
              f'--work-dir {args.work_dir} --wait')


def _submit(run: ZooRun, left: List[Step],
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
    text = job_script(
        name=run.name,
        steps=left,
        resources=resources,
        repo=REPO,
        log=osp.join(run.work_dir, 'slurm-%j.log'),
        python=sys.executable)

    def write(tmp: str) -> None:
        with open(tmp, 'w', encoding='utf-8') as f:
            f.write(text)

    write_atomically(script, write)
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


def _look(job: Job) -> Tuple[str, str, str]:
    """A job now: its state, its run time, and what else to show."""
    state = job_state(job['job_id'])
    if state is None:  # slurmctld forgot it: the work dir tells
        finished = progress(_run_of(job)).finished
        return ('COMPLETED' if finished else 'GONE'), '', ''
    note = ''
    if state.state == 'RUNNING':
        note = current_step(job['log']) or ''
    elif state.state == 'PENDING' and state.reason not in ('', 'None'):
        note = f'({state.reason})'
    return state.state, state.elapsed, note


def _line(job: Job, look: Tuple[str, str, str], width: int) -> str:
    state, elapsed, note = look
    return (f'{_run_of(job).name:<{width}}  job {job["job_id"]:>6}  '
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
    width = max(len(_run_of(job).name) for job in jobs)
    while True:
        active = 0
        for job in jobs:
            look = _look(job)
            active += look[0] in ACTIVE
            # A new line when the state or the step changes, not the time.
            if shown.get(job['job_id']) != (look[0], look[2]):
                shown[job['job_id']] = (look[0], look[2])
                print(
                    f'[{_elapsed(time.monotonic() - start)}] ' +
                    _line(job, look, width),
                    flush=True)
        if not active:
            break
        time.sleep(poll)


def report(jobs: List[Job]) -> None:
    """Name each job whose run did not finish, with its log's tail.

    Raises:
        UserError: There are such jobs.
    """
    failed = []
    for job in jobs:
        run = _run_of(job)
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
    print(f'finished: {", ".join(_run_of(job).name for job in jobs)}; '
          'gather with: python tools/misc/zoo_slurm.py gather --work-dir '
          f'{osp.dirname(jobs[0]["work_dir"])}')


def status_command(args: argparse.Namespace) -> None:
    jobs = _jobs(args.work_dir)
    if args.wait:
        follow(jobs, args.poll)
        return
    width = max(len(_run_of(job).name) for job in jobs)
    for job in jobs:
        print(_line(job, _look(job), width))
    if not any(_active(job) for job in jobs):
        report(jobs)


def gather_command(args: argparse.Namespace) -> None:
    jobs = _jobs(args.work_dir)
    publish_dir = args.publish_dir or osp.join(args.work_dir, 'published')
    metafile = args.metafile or osp.join(args.work_dir, 'metafile.yml')
    rows, finished = [], []
    for job in jobs:
        run = _run_of(job)
        cfg = load_config(run.config, parse_cfg_options(run.options))
        done = progress(run)
        # Without Slurm's commands (gathering elsewhere) the work dir tells.
        state = _active(job) if shutil.which('scontrol') else None
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


def main() -> None:
    args = parse_args()
    {
        'submit': submit_command,
        'status': status_command,
        'gather': gather_command
    }[args.command](
        args)


if __name__ == '__main__':
    run_tool(main)
