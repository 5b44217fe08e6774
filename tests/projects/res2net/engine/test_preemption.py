# Copyright (c) Res2Net-MMDet contributors. All rights reserved.
"""projects/res2net/engine/preemption.py: signals recorded, the requeue
decision, the final line and exit status of a stopped run.

The stop itself is tested in test_hooks.py (in-process), through
tools/train.py in tests/tools/test_train_test.py, and requeued by a real
Slurm time limit in tests/tools/misc/test_zoo_slurm.py.
"""
import os
import signal
import time

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


def test_forked_workers_ignore_the_signals():
    signals = StopSignals()
    signals.install()
    try:
        child = os.fork()
        if child == 0:  # a data loader worker, as Slurm signals it
            for signum in (signal.SIGUSR1, signal.SIGTERM, signal.SIGINT):
                os.kill(os.getpid(), signum)
            time.sleep(0.1)
            os._exit(0 if signals.received is None else 1)
        _, status = os.waitpid(child, 0)
        assert os.waitstatus_to_exitcode(status) == 0
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
