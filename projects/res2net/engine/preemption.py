# Copyright (c) Res2Net-MMDet contributors. All rights reserved.
"""Stop a training run on a signal at a checkpoint, and requeue its Slurm
job.

Slurm sends a warning signal some time before a job's time limit when the
job asks for one (``--signal=USR1@120``: SIGUSR1, 120 s before; the job
scripts of this project do), and SIGTERM when it preempts a job or the
limit is reached; Ctrl-C is SIGINT. :class:`StopSignals` turns each of
them into a request that :class:`~projects.res2net.engine.hooks.\
SignalCheckpointHook` honours at the end of the iteration in progress: it
saves a checkpoint of that position on every rank's agreement and ends the
run with :class:`TrainingStopped`. The tool's exit (:func:`conclude`) then
requeues the Slurm job when Slurm may run it again (its requeued run
resumes from that checkpoint: :func:`restart_count`), or says why not
and how to resume.
"""
import atexit
import multiprocessing
import os
import shlex
import shutil
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass
from types import FrameType
from typing import Dict, List, Mapping, Optional, Sequence, Set

from ..errors import UserError

# The signals that stop a run at a checkpoint.
STOP_SIGNALS = ('SIGUSR1', 'SIGTERM', 'SIGINT')
# Why each arrives, for the log and the final line.
_WHY = {
    'SIGUSR1': "Slurm's warning before the time limit",
    'SIGTERM': 'preemption, the time limit or a kill',
    'SIGINT': 'Ctrl-C',
}


def describe(signum: int) -> str:
    """``'SIGUSR1 (Slurm's warning before the time limit)'``."""
    name = signal.Signals(signum).name
    return f'{name} ({_WHY[name]})' if name in _WHY else name


def check_signal_names(names: Sequence[str]) -> None:
    """Raise one line for a name that is not a stop signal."""
    for name in names:
        if name not in _WHY:
            raise UserError(f'{name}: not a signal a run can stop on; choose '
                            f'from {", ".join(STOP_SIGNALS)}')


class StopSignals:
    """Record the stop signals instead of dying of them.

    Installed, each of ``names`` sets :attr:`received` (the first one
    counts) and the run goes on to a point where it can stop whole. A
    second Ctrl-C interrupts at once (``KeyboardInterrupt``), for a user
    who does not want to wait for the iteration to end.

    Slurm signals every process of a job step, the data loader workers too,
    and torch's workers end on SIGTERM. So the signals are taken by a
    thread of their own and blocked on every other: processes forked later
    (the workers) inherit the block and go on while the run stops in order.
    Python still runs the handler in the main thread. At the exit, the
    workers still running are killed (:func:`_end_workers`): Python's own
    exit would end them with SIGTERM, which they block.
    """

    def __init__(self, names: Sequence[str] = STOP_SIGNALS) -> None:
        check_signal_names(names)
        self.signums = [signal.Signals[name].value for name in names]
        self.received: Optional[int] = None
        self._previous: Dict[int, object] = {}
        self._blocked_before: Set[int] = set()
        self._owner = 0
        self._catcher: Optional[threading.Thread] = None
        self._done = threading.Event()

    @property
    def installed(self) -> bool:
        return bool(self._previous)

    def install(self) -> None:
        """Take over the signals (from the main thread, as Python requires);
        once installed, again is a no-op."""
        if self.installed:
            return
        self._owner = os.getpid()
        for signum in self.signums:
            self._previous[signum] = signal.signal(signum, self._record)
        if not self._catcher:
            atexit.register(_end_workers)  # before multiprocessing's
        self._done.clear()
        self._catcher = threading.Thread(
            target=self._catch, name='stop-signals', daemon=True)
        self._catcher.start()
        self._blocked_before = signal.pthread_sigmask(signal.SIG_BLOCK,
                                                      self.signums)

    def _catch(self) -> None:
        """The catcher thread: the one that takes the signals. It unblocks
        them itself, as a process may start with them blocked (the mask is
        inherited through fork and exec: a parent that blocked them would
        leave no thread to take them, and they would wait until the end)."""
        signal.pthread_sigmask(signal.SIG_UNBLOCK, self.signums)
        self._done.wait()

    def restore(self) -> None:
        """Give the signals back their previous handlers and this thread its
        previous mask; forget the one received."""
        if self.installed:
            signal.pthread_sigmask(
                signal.SIG_UNBLOCK,
                set(self.signums) - set(self._blocked_before))
            self._done.set()
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()
        self.received = None

    def _record(self, signum: int, frame: Optional[FrameType]) -> None:
        if os.getpid() != self._owner:
            return  # a forked process: the run's own process stops it
        if signum == signal.SIGINT and self.received == signal.SIGINT:
            self.restore()
            raise KeyboardInterrupt
        if self.received is None:
            self.received = signum
            again = ' (Ctrl-C again stops at once, without one)' if \
                signum == signal.SIGINT else ''
            print(
                f'{describe(signum)}: the run stops at the end of this '
                f'iteration, with a checkpoint{again}',
                file=sys.stderr,
                flush=True)


def _end_workers() -> None:
    """Kill the daemonic child processes (data loader workers) still alive
    at the exit, as multiprocessing's exit would terminate them: they block
    the SIGTERM it sends (:class:`StopSignals`)."""
    for child in multiprocessing.active_children():
        if child.daemon:
            child.kill()
            child.join()


# The process's stop signals: tools/train.py takes them at its start (before
# any loader worker is forked), SignalCheckpointHook reads them.
_STOP_SIGNALS = StopSignals()


def stop_signals() -> StopSignals:
    """This process's :class:`StopSignals`."""
    return _STOP_SIGNALS


class TrainingStopped(Exception):
    """A training run that stopped on a signal, at a checkpoint.

    Attributes:
        signum: The signal.
        checkpoint: The checkpoint of the position it stopped at.
        iteration: Iterations trained when it stopped.
        started_at: Iterations trained when this process started (its
            resume point): none in between means no progress.
        max_requeues: How often a Slurm job may requeue itself.
        rank: This process's rank; rank 0 reports and requeues.
    """

    def __init__(self, *, signum: int, checkpoint: str, iteration: int,
                 started_at: int, max_requeues: int, rank: int) -> None:
        super().__init__(f'stopped by {describe(signum)} after iteration '
                         f'{iteration}: saved {checkpoint}')
        self.signum = signum
        self.checkpoint = checkpoint
        self.iteration = iteration
        self.started_at = started_at
        self.max_requeues = max_requeues
        self.rank = rank

    @property
    def exit_status(self) -> int:
        """The shell's status of a process ended by the signal."""
        return 128 + self.signum


def scontrol_job(job_id: str) -> Optional[Dict[str, str]]:
    """The fields of ``scontrol -o show job JOB_ID`` (``JobState``,
    ``Restarts``, ``BatchFlag``, ``Requeue``, ...); None when Slurm does not
    know the job (any more) or scontrol is missing."""
    scontrol = shutil.which('scontrol')
    if scontrol is None:
        return None
    done = subprocess.run([scontrol, '-o', 'show', 'job', job_id],
                          capture_output=True,
                          text=True)
    if done.returncode != 0:
        return None
    fields: Dict[str, str] = {}
    for word in done.stdout.split():
        key, sep, value = word.partition('=')
        if sep and key not in fields:
            fields[key] = value
    return fields if 'JobState' in fields else None


@dataclass(frozen=True)
class SlurmJob:
    """The Slurm job this process runs in.

    Attributes:
        job_id: ``SLURM_JOB_ID``.
        restarts: How often it was requeued (``SLURM_RESTART_COUNT``).
        batch: Submitted by sbatch (only batch jobs can be requeued; an
            allocation that srun made itself cannot).
        requeueable: Slurm may requeue it (``sbatch --requeue``, or the
            cluster's ``JobRequeue=1``).
        state: Its ``JobState``: ``RUNNING``, or ``COMPLETING`` once Slurm
            ends it (cancelled, or at its time limit).
    """

    job_id: str
    restarts: int
    batch: bool
    requeueable: bool
    state: str = 'RUNNING'

    @classmethod
    def current(cls,
                environ: Mapping[str,
                                 str] = os.environ) -> Optional['SlurmJob']:
        """The job of this process; None outside Slurm."""
        job_id = environ.get('SLURM_JOB_ID')
        if not job_id:
            return None
        fields = scontrol_job(job_id) or {}
        return cls(job_id, restart_count(environ),
                   fields.get('BatchFlag') == '1',
                   fields.get('Requeue') == '1', fields.get('JobState', ''))


def why_not_requeue(stop: TrainingStopped, job: SlurmJob) -> Optional[str]:
    """Why ``job`` must not requeue itself after ``stop``; None if it may.

    A job requeues itself only if Slurm allows it, it still runs (a
    cancelled job stays cancelled), the run went on since the job
    (re)started, and it has not used up its requeues: a job whose time limit
    leaves no time to train, or that keeps being stopped, ends instead of
    cycling through the queue.
    """
    if not job.batch:
        return ('srun started this job itself, and Slurm requeues batch jobs '
                'only (sbatch; tools/misc/zoo_slurm.py submits them)')
    if not job.requeueable:
        return ('the job is not requeueable: submit it with sbatch --requeue '
                '(tools/misc/zoo_slurm.py does)')
    if job.state != 'RUNNING':
        # scancel and the time limit itself both show as COMPLETING: a
        # person's cancel is not undone.
        return (f'Slurm is ending the job ({job.state or "state unknown"}: '
                'cancelled, or at its time limit without the warning signal '
                'before it)')
    if job.restarts >= stop.max_requeues:
        times = 'time' if job.restarts == 1 else 'times'
        return (f'it was requeued {job.restarts} {times} already, the most '
                f'SignalCheckpointHook(max_requeues={stop.max_requeues}) '
                'allows; raise max_requeues in custom_hooks to allow more')
    if stop.iteration <= stop.started_at:
        return (f'no iteration was trained since the job (re)started at '
                f'iteration {stop.started_at}: give it a longer time limit '
                '(--time) or an earlier signal (STOP_SIGNAL_LEAD)')
    return None


def resume_command(argv: Optional[Sequence[str]] = None) -> str:
    """The command that resumes this run: the tool's own (``sys.argv``),
    with ``--resume`` (that picks the latest checkpoint of the work dir)
    instead of any ``--resume PATH``."""
    argv = sys.argv if argv is None else argv
    args: List[str] = []
    for word in argv[1:]:
        # argparse takes --name=value as it takes --name value.
        name, sep, value = word.partition('=')
        split = sep and name in ('--resume', '--launcher')
        args += [name, value] if split else [word]
    if '--resume' in args:
        at = args.index('--resume')
        has_path = at + 1 < len(args) and not args[at + 1].startswith('-')
        del args[at:at + 1 + has_path]
    launcher = args.index('--launcher') if '--launcher' in args else -1
    if launcher >= 0 and args[launcher + 1:launcher + 2] != ['none']:
        return 'the same launch command with --resume added'
    words = ['python', os.path.relpath(argv[0]), *args, '--resume']
    return ' '.join(shlex.quote(word) for word in words)


def requeue(job_id: str) -> Optional[str]:
    """``scontrol requeue JOB_ID``; its error message, or None."""
    done = subprocess.run(['scontrol', 'requeue', job_id],
                          capture_output=True,
                          text=True)
    if done.returncode == 0:
        return None
    return (done.stderr.strip().splitlines() or ['no message'])[-1]


def conclude(stop: TrainingStopped,
             environ: Mapping[str, str] = os.environ) -> int:
    """End a stopped run: on rank 0, say where it stopped and either requeue
    its Slurm job or say why not and how to resume. Call it after the
    process group is left: a requeue ends every process of the job at once.

    Returns:
        The exit status: 0 on the other ranks (a launcher that sees one
        task fail ends the others, rank 0's requeue among them), else the
        shell's status of the signal (143 for SIGTERM), or 0 once the job is
        requeued.
    """
    if stop.rank != 0:
        return 0
    head = f'training {stop}'
    job = SlurmJob.current(environ)
    if job is None:
        print(
            f'{head}; resume with: {resume_command()}',
            file=sys.stderr,
            flush=True)
        return stop.exit_status
    reason = why_not_requeue(stop, job)
    if reason is None:
        print(
            f'{head}; requeuing Slurm job {job.job_id} (requeue '
            f'{job.restarts + 1} of at most {stop.max_requeues}): it resumes '
            f'from {stop.checkpoint}',
            file=sys.stderr,
            flush=True)
        failed = requeue(job.job_id)
        if failed is None:
            return 0
        reason = f'scontrol requeue {job.job_id} failed: {failed}'
    print(
        f'{head}; not requeued: {reason}; resume with: '
        f'{resume_command()}',
        file=sys.stderr,
        flush=True)
    return stop.exit_status


def restart_count(environ: Mapping[str, str] = os.environ) -> int:
    """How often this process's Slurm job was requeued
    (``SLURM_RESTART_COUNT``); 0 outside Slurm. A requeued job's run
    resumes from the work dir's latest checkpoint, whatever its command
    says."""
    if not environ.get('SLURM_JOB_ID'):
        return 0
    return int(environ.get('SLURM_RESTART_COUNT') or 0)
