# Copyright (c) Res2Net-MMDet contributors. All rights reserved.
"""projects/res2net/engine/preemption.py: signals recorded, the requeue
decision, the final line and exit status of a stopped run; Slurm's
scontrol is a fake on PATH here.

The stop itself is tested in test_hooks.py (in-process), through
tools/train.py in tests/tools/test_train_test.py, on every rank in
tests/tools/test_dist_launchers.py, and requeued by a real Slurm time limit
in tests/tools/test_slurm_launchers.py; a cancelled job is not requeued in
tests/tools/misc/test_zoo_slurm.py.
"""
import os
import signal
import time
from pathlib import Path

import pytest

from projects.res2net.engine.preemption import (SlurmJob, StopSignals,
                                                TrainingStopped, conclude,
                                                describe, restart_count,
                                                resume_command,
                                                why_not_requeue)
from projects.res2net.errors import UserError


def _kill(signals: StopSignals, signum: int) -> None:
    """Send this process ``signum`` and wait for its handler: the signals
    are taken by another thread, the handler runs in this one soon after."""
    os.kill(os.getpid(), signum)
    deadline = time.monotonic() + 10
    while signals.received is None and time.monotonic() < deadline:
        time.sleep(0.001)


def _stop(**kwargs) -> TrainingStopped:
    args = dict(
        signum=signal.SIGUSR1,
        checkpoint='work/iter_6.pth',
        iteration=6,
        started_at=2,
        max_requeues=3,
        rank=0)
    args.update(kwargs)
    return TrainingStopped(**args)


def test_signals_are_recorded_until_restored(capsys):
    before = signal.getsignal(signal.SIGTERM)
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, [])
    signals = StopSignals()
    signals.install()
    try:
        assert signals.installed
        _kill(signals, signal.SIGTERM)
        _kill(signals, signal.SIGUSR1)
        time.sleep(0.05)
        assert signals.received == signal.SIGTERM  # the first one counts
        assert capsys.readouterr().err == (
            'SIGTERM (preemption, the time limit or a kill): the run stops '
            'at the end of this iteration, with a checkpoint\n')
    finally:
        signals.restore()
    assert not signals.installed and signals.received is None
    assert signal.getsignal(signal.SIGTERM) is before
    assert signal.pthread_sigmask(signal.SIG_BLOCK, []) == mask


def test_signals_the_process_started_blocked_are_taken(capsys):
    # A signal mask is inherited through fork and exec: a parent that
    # blocked them (a launcher, a test process) must not leave the run deaf
    # to them until its end.
    stops = {signal.SIGTERM, signal.SIGUSR1, signal.SIGINT}
    before = signal.pthread_sigmask(signal.SIG_BLOCK, stops)
    signals = StopSignals()
    try:
        signals.install()
        _kill(signals, signal.SIGTERM)
        assert signals.received == signal.SIGTERM
        assert capsys.readouterr().err.startswith('SIGTERM')
        signals.restore()
        # The mask as it was: still blocked, and nothing left pending.
        assert stops <= signal.pthread_sigmask(signal.SIG_BLOCK, [])
        assert not signal.sigpending() & stops
    finally:
        signals.restore()
        signal.pthread_sigmask(signal.SIG_SETMASK, before)


def test_a_second_ctrl_c_stops_at_once(capsys):
    signals = StopSignals()
    signals.install()
    try:
        _kill(signals, signal.SIGINT)
        assert 'Ctrl-C again stops at once' in capsys.readouterr().err
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
            for _ in range(1000):  # interrupted once the handler runs
                time.sleep(0.01)
        assert not signals.installed
    finally:
        signals.restore()


STOPS = {signal.SIGUSR1, signal.SIGTERM, signal.SIGINT}


def _in_child(signals: StopSignals, *, unblock: bool) -> int:
    """Fork a process that sends itself every stop signal, a second Ctrl-C
    too, as Slurm signals a job's data loader workers; its exit status: 0
    if it went on with nothing received, 1 if it took a stop, 2 if it was
    interrupted, 3 if the signals did not reach its handler (with
    ``unblock``) or did (without: still pending is what the block means)."""
    child = os.fork()
    if child == 0:
        status = 2
        try:
            if unblock:
                signal.pthread_sigmask(signal.SIG_UNBLOCK, STOPS)
            for signum in (signal.SIGINT, signal.SIGINT, signal.SIGUSR1,
                           signal.SIGTERM):
                os.kill(os.getpid(), signum)
            time.sleep(0.05)
            pending = STOPS <= signal.sigpending()
            status = 1 if signals.received is not None else \
                3 if pending is unblock else 0
        finally:
            os._exit(status)
    _, status = os.waitpid(child, 0)
    return os.waitstatus_to_exitcode(status)


def test_forked_workers_ignore_the_signals():
    # A worker forked by the main thread inherits its block: the signals
    # wait, pending, and the worker goes on.
    signals = StopSignals()
    signals.install()
    try:
        assert _in_child(signals, unblock=False) == 0
        assert signals.received is None
    finally:
        signals.restore()


def test_a_forked_process_that_takes_the_signals_is_not_the_run():
    # One forked by a thread that does not block them (started before
    # install()), or that unblocks them, runs the handler it inherited: it
    # must neither take the run's stop (its line, a checkpoint it cannot
    # save) nor be interrupted by a second Ctrl-C; the run's own process
    # stops it.
    signals = StopSignals()
    signals.install()
    try:
        assert _in_child(signals, unblock=True) == 0
        assert signals.received is None
    finally:
        signals.restore()


def test_only_stop_signals_are_taken():
    with pytest.raises(
            UserError,
            match='SIGHUP: not a signal a run can stop '
            'on; choose from SIGUSR1, SIGTERM, SIGINT'):
        StopSignals(['SIGHUP'])


def test_the_stop_says_why_and_where():
    stop = _stop()
    assert str(stop) == ("stopped by SIGUSR1 (Slurm's warning before the "
                         'time limit) after iteration 6: saved '
                         'work/iter_6.pth')
    assert stop.exit_status == 128 + signal.SIGUSR1
    assert describe(signal.SIGINT) == 'SIGINT (Ctrl-C)'


@pytest.mark.parametrize('job, stop, why', [
    (SlurmJob('7', 0, True, True), {}, None),
    (SlurmJob('7', 2, True, True), {}, None),
    (SlurmJob('7', 0, False, True), {}, 'srun started this job itself'),
    (SlurmJob('7', 0, True, False), {}, 'the job is not requeueable'),
    (SlurmJob('7', 0, True, True, 'COMPLETING'), {},
     'Slurm is ending the job (COMPLETING: cancelled, or at its time limit'),
    (SlurmJob('7', 3, True, True), {}, 'it was requeued 3 times already, the'
     ' most SignalCheckpointHook(max_requeues=3) allows'),
    (SlurmJob('7', 1, True, True), dict(iteration=2),
     'no iteration was trained since the job (re)started at iteration 2'),
])
def test_a_job_requeues_itself_only_when_it_should(job, stop, why):
    said = why_not_requeue(_stop(**stop), job)
    if why is None:
        assert said is None
    else:
        assert why in said


def test_the_resume_command_is_the_tool_s_own():
    assert resume_command(['tools/train.py', 'cfg.py', '--work-dir', 'w']) \
        == 'python tools/train.py cfg.py --work-dir w --resume'
    assert resume_command(
        ['tools/train.py', 'cfg.py', '--resume', 'w/iter_2.pth', '--amp']) \
        == 'python tools/train.py cfg.py --amp --resume'
    assert resume_command(['tools/train.py', 'cfg.py', '--launcher',
                           'slurm']) == \
        'the same launch command with --resume added'
    # --launcher none is a plain run; argparse's --name=value forms too.
    assert resume_command(['tools/train.py', 'cfg.py', '--launcher', 'none'])\
        == 'python tools/train.py cfg.py --launcher none --resume'
    assert resume_command(['tools/train.py', 'cfg.py', '--launcher=pytorch'])\
        == 'the same launch command with --resume added'
    assert resume_command(['tools/train.py', 'cfg.py', '--resume=w/i.pth']) \
        == 'python tools/train.py cfg.py --resume'


def test_off_the_cluster_the_stop_says_how_to_resume(capsys, monkeypatch):
    monkeypatch.setattr('sys.argv', ['tools/train.py', 'cfg.py'])
    assert conclude(_stop(signum=signal.SIGINT), environ={}) == 130
    assert capsys.readouterr().err == (
        'training stopped by SIGINT (Ctrl-C) after iteration 6: saved '
        'work/iter_6.pth; resume with: python tools/train.py cfg.py '
        '--resume\n')
    # The other ranks leave quietly, with success: a launcher ends every
    # task when one fails, rank 0's requeue among them.
    assert conclude(_stop(rank=1), environ={}) == 0
    assert capsys.readouterr().err == ''


def test_a_requeued_job_resumes():
    assert restart_count(dict(SLURM_JOB_ID='7', SLURM_RESTART_COUNT='1')) == 1
    assert restart_count(dict(SLURM_JOB_ID='7', SLURM_RESTART_COUNT='0')) == 0
    assert restart_count(dict(SLURM_JOB_ID='7')) == 0
    assert restart_count(dict(SLURM_RESTART_COUNT='1')) == 0
    assert SlurmJob.current({}) is None


def _fake_scontrol(bin_dir: Path, *, requeue_status: int,
                   requeue_error: str) -> Path:
    """An ``scontrol`` that shows job 7 running as a requeueable batch job
    (``-o show job``: one line of fields, a free-text one among them) and
    answers ``requeue`` with ``requeue_status`` and ``requeue_error`` on
    stderr; the file its calls are logged in."""
    calls = bin_dir / 'calls'
    bin_dir.mkdir()
    shown = ('JobId=7 JobName=r2 UserId=u(1) JobState=RUNNING Reason=None '
             'Requeue=1 Restarts=1 BatchFlag=1 Comment=was JobState=PENDING')
    scontrol = bin_dir / 'scontrol'
    scontrol.write_text(f"""#!/bin/sh
echo "$*" >> '{calls}'
if [ "$1 $2 $3 $4" = "-o show job 7" ]; then
    echo '{shown}'
    exit 0
fi
if [ "$1 $2" = "requeue 7" ]; then
    printf '%s' '{requeue_error}' >&2
    exit {requeue_status}
fi
exit 1
""")
    scontrol.chmod(0o755)
    return calls


@pytest.mark.parametrize('status, error, line', [
    (0, '', None),
    (1, 'slurm_requeue error: one\nRequested operation is presently '
     'disabled\n', 'scontrol requeue 7 failed: Requested operation is '
     'presently disabled'),
    (1, '', 'scontrol requeue 7 failed: no message'),
])
def test_a_slurm_job_requeues_itself_or_says_why_not(capsys, monkeypatch,
                                                     tmp_path, status, error,
                                                     line):
    calls = _fake_scontrol(
        tmp_path / 'bin', requeue_status=status, requeue_error=error)
    monkeypatch.setenv('PATH', f'{tmp_path}/bin:{os.environ["PATH"]}')
    monkeypatch.setattr('sys.argv', ['tools/train.py', 'cfg.py'])
    requeued = dict(SLURM_JOB_ID='7', SLURM_RESTART_COUNT='1')
    stopped = ("training stopped by SIGUSR1 (Slurm's warning before the "
               'time limit) after iteration 6: saved work/iter_6.pth; ')
    said = [
        f'{stopped}requeuing Slurm job 7 (requeue 2 of at most 3): it '
        'resumes from work/iter_6.pth'
    ]
    if line is not None:
        said.append(f'{stopped}not requeued: {line}; resume with: python '
                    'tools/train.py cfg.py --resume')
    assert conclude(_stop(), environ=requeued) == \
        (0 if line is None else 128 + signal.SIGUSR1)
    assert capsys.readouterr().err.splitlines() == said
    assert calls.read_text().splitlines() == ['-o show job 7', 'requeue 7']
