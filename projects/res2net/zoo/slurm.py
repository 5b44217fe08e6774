# Copyright (c) Res2Net-MMDet contributors. All rights reserved.
"""Slurm batch jobs of model-zoo runs: the job script, sbatch, job states.

A job holds one config's steps (:mod:`projects.res2net.zoo.runs`): the
distributed ones go through ``tools/launch/srun.sh``, the launcher that
``tools/slurm_train.sh`` and ``tools/slurm_test.sh`` use, as job steps of
the whole allocation; the benchmark runs in the batch step (one process).
The allocation is sized by mmdet's Slurm variables, read from the
environment as the launchers read them (:class:`Resources`). Each job is
requeueable and asks for SIGUSR1 ``STOP_SIGNAL_LEAD`` seconds (120) before
its time limit: training checkpoints there and requeues the job, which runs
its script again; train.py resumes (``--resume``) and the steps go on
(:mod:`projects.res2net.engine.preemption`).
"""
import os
import os.path as osp
import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from typing import Dict, Mapping, Optional, Sequence

from ..engine.preemption import scontrol_job
from ..errors import UserError
from .runs import Step

# Job states in which a job may still run (squeue's long names).
ACTIVE = frozenset({
    'PENDING', 'CONFIGURING', 'RUNNING', 'COMPLETING', 'SUSPENDED', 'REQUEUED',
    'REQUEUE_HOLD', 'REQUEUE_FED', 'RESIZING', 'SIGNALING', 'STAGE_OUT',
    'STOPPED'
})
# The line a job prints before each step; the progress display reads it.
STEP_MARK = '==> [{index}/{total}] {tool}'
# Each job's rendezvous port: PORT_BASE + job id modulo PORT_SPAN.
PORT_BASE, PORT_SPAN = 20000, 40000
_STEP_LINE = re.compile(r'^==> \[(\d+)/(\d+)\] (\S+)', re.M)


@dataclass(frozen=True)
class Resources:
    """What each job asks Slurm for: mmdet's Slurm variables.

    The defaults are those of ``tools/launch/srun.sh``: 8 tasks (GPUs),
    8 per node, 5 CPUs per task, the ``gpu:GPUS_PER_NODE`` generic
    resource per node (``GRES=none``: none, for CPU-only clusters); and of
    ``tools/slurm_train.sh``: the stop signal ``STOP_SIGNAL_LEAD`` seconds
    (120) before the time limit (0: none).
    """

    partition: str
    gpus: int = 8
    gpus_per_node: int = 8
    cpus_per_task: int = 5
    gres: Optional[str] = None
    srun_args: str = ''
    signal_lead: int = 120

    @classmethod
    def from_environ(cls,
                     partition: str,
                     environ: Mapping[str, str] = os.environ) -> 'Resources':
        """Read GPUS, GPUS_PER_NODE, CPUS_PER_TASK, GRES and SRUN_ARGS.

        Raises:
            UserError: A count that is not a positive integer, or GPUS not
                a multiple of GPUS_PER_NODE.
        """
        counts = {}
        for name, field in (('GPUS', 'gpus'), ('GPUS_PER_NODE',
                                               'gpus_per_node'),
                            ('CPUS_PER_TASK', 'cpus_per_task')):
            if name not in environ:
                continue
            value = environ[name]
            if not value.isdigit() or int(value) < 1:
                raise UserError(f'{name}={value}: not a positive number of '
                                f'{"CPUs" if "CPU" in name else "tasks"}; '
                                f'set e.g. {name}=8')
            counts[field] = int(value)
        lead = environ.get('STOP_SIGNAL_LEAD')
        if lead is not None:
            if not lead.isdigit():
                raise UserError(f'STOP_SIGNAL_LEAD={lead}: not a number of '
                                'seconds; set e.g. STOP_SIGNAL_LEAD=120 (0: '
                                'no signal before the time limit)')
            counts['signal_lead'] = int(lead)
        resources = cls(
            partition,
            **counts,
            gres=environ.get('GRES') or None,
            srun_args=environ.get('SRUN_ARGS', ''))
        if resources.gpus > resources.gpus_per_node and \
                resources.gpus % resources.gpus_per_node:
            raise UserError(
                f'GPUS={resources.gpus} is not a multiple of GPUS_PER_NODE='
                f'{resources.gpus_per_node}: the nodes would be unevenly '
                'filled; set GPUS to a multiple')
        return resources

    @property
    def nodes(self) -> int:
        return max(1, self.gpus // self.gpus_per_node)

    @property
    def tasks_per_node(self) -> int:
        return min(self.gpus, self.gpus_per_node)

    @property
    def gres_request(self) -> Optional[str]:
        gres = self.gres or f'gpu:{self.tasks_per_node}'
        return None if gres == 'none' else gres

    def environment(self) -> Dict[str, str]:
        """The variables that ``tools/launch/srun.sh`` reads (the stop
        signal is the job's, in its header)."""
        return dict(
            GPUS=str(self.gpus),
            GPUS_PER_NODE=str(self.tasks_per_node),
            CPUS_PER_TASK=str(self.cpus_per_task),
            GRES=self.gres_request or 'none',
            SRUN_ARGS=self.srun_args)


def job_script(*, name: str, steps: Sequence[Step], resources: Resources,
               repo: str, log: str, python: str) -> str:
    """A batch script that runs ``steps`` in ``repo`` as Slurm job ``name``.

    The job stops at the first step that fails (``set -e``); its output goes
    to ``log`` (``%j``: the job id; a requeued job appends to it). It may be
    requeued, and asks for SIGUSR1 ``resources.signal_lead`` seconds before
    its time limit (the time limit is the partition's, or sbatch's
    ``SBATCH_TIMELIMIT``).
    """
    header = [
        '#!/usr/bin/env bash',
        f'#SBATCH --job-name={name}',
        f'#SBATCH --partition={resources.partition}',
        f'#SBATCH --nodes={resources.nodes}',
        f'#SBATCH --ntasks={resources.gpus}',
        f'#SBATCH --ntasks-per-node={resources.tasks_per_node}',
        f'#SBATCH --cpus-per-task={resources.cpus_per_task}',
    ]
    if resources.gres_request:
        header.append(f'#SBATCH --gres={resources.gres_request}')
    header += [
        f'#SBATCH --output={log}',
        '#SBATCH --open-mode=append',
        '#SBATCH --requeue',
    ]
    if resources.signal_lead:
        header.append(f'#SBATCH --signal=USR1@{resources.signal_lead}')
    header += [
        '# Written by tools/misc/zoo_slurm.py: the steps of one model-zoo '
        'run. Requeued, it runs again: training resumes, the rest follows.',
        'set -euo pipefail',
        f'cd {shlex.quote(repo)}',
    ]
    exports = dict(resources.environment(), PYTHON=python)
    header += [
        f'export {key}={shlex.quote(value)}' for key, value in exports.items()
    ]
    # The rendezvous port of the job's process groups: its own, since jobs
    # may share a node (and inherit the submitter's PORT or MASTER_PORT).
    header.append(f'export MASTER_PORT=$(({PORT_BASE} + SLURM_JOB_ID % '
                  f'{PORT_SPAN}))')
    body = []
    for index, step in enumerate(steps, 1):
        body.append(
            'echo "' +
            STEP_MARK.format(index=index, total=len(steps), tool=step.tool) +
            ' $(date)"')
        args = ' '.join(shlex.quote(arg) for arg in step.args)
        if step.distributed:
            partition = shlex.quote(resources.partition)
            body.append(f'tools/launch/srun.sh {partition} '
                        f'{shlex.quote(name)} {step.tool} {args}')
        else:
            body.append('OMP_NUM_THREADS=$CPUS_PER_TASK "$PYTHON" '
                        f'tools/{step.tool} {args}')
    body.append('echo "==> finished $(date)"')
    return '\n'.join(header + body) + '\n'


def _slurm_command(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise UserError(f'{name} not found: run this where Slurm\'s commands '
                        'are on PATH (a login node of the cluster)')
    return path


def submit(script: str) -> str:
    """``sbatch`` the script; its job id.

    Raises:
        UserError: sbatch is missing or refuses the job (its message).
    """
    done = subprocess.run([_slurm_command('sbatch'), '--parsable', script],
                          capture_output=True,
                          text=True)
    if done.returncode != 0:
        why = (done.stderr.strip().splitlines() or ['no message'])[-1]
        raise UserError(f'sbatch refused {script}: {why}; check the '
                        'partition and the GPUS/GPUS_PER_NODE/CPUS_PER_TASK/'
                        'GRES variables')
    return done.stdout.strip().split(';')[0]


@dataclass(frozen=True)
class JobState:
    """A job as ``scontrol show job`` reports it."""

    state: str  # PENDING, RUNNING, COMPLETED, FAILED, CANCELLED, ...
    elapsed: str  # RunTime, [days-]hh:mm:ss
    reason: str = ''
    restarts: int = 0  # how often it was requeued

    @property
    def active(self) -> bool:
        return self.state in ACTIVE


def job_state(job_id: str) -> Optional[JobState]:
    """What Slurm says of a job; None once it has forgotten it.

    slurmctld keeps an ended job for ``MinJobAge`` (300 s by default);
    after that only the work dir tells how it went.
    """
    _slurm_command('scontrol')
    fields = scontrol_job(job_id)
    if fields is None:
        return None
    restarts = fields.get('Restarts', '0')
    return JobState(fields['JobState'], fields.get('RunTime', ''),
                    fields.get('Reason', ''),
                    int(restarts) if restarts.isdigit() else 0)


def _log_end(log: str, size: int = 65536) -> Optional[str]:
    """The last ``size`` bytes of a job's log as text; None without a log."""
    if not osp.isfile(log):
        return None
    with open(log, 'rb') as f:
        f.seek(max(0, osp.getsize(log) - size))
        return f.read().decode('utf-8', 'replace')


def current_step(log: str) -> Optional[str]:
    """``'test.py (2/3)'``: the step a job's log shows it in, if any."""
    text = _log_end(log)
    found = _STEP_LINE.findall(text) if text is not None else []
    if not found:
        return None
    index, total, tool = found[-1]
    return f'{tool} ({index}/{total})'


def log_tail(log: str, lines: int = 20) -> str:
    """The last ``lines`` lines of a job's log (or why there are none)."""
    text = _log_end(log)
    if text is None:
        return f'(no log at {log}: the job did not start)'
    return '\n'.join(text.rstrip('\n').splitlines()[-lines:])
