# Copyright (c) Res2Net-MMDet contributors. All rights reserved.
"""The work dir's training lock (projects/res2net/engine/worklock.py)."""
import contextlib
import json
import os
import re
import signal
import socket
import sys
import time
import traceback

import pytest
import torch.distributed as torch_dist
from mmengine.config import Config

from projects.res2net.engine import worklock
from projects.res2net.engine.worklock import (LOCK_NAME, WorkDirInUse,
                                              WorkDirLock, hold_work_dir)
from projects.res2net.errors import UserError

HOST = socket.gethostname()


def _listing(path) -> dict:
    """Every file under ``path`` and its bytes."""
    return {
        p.relative_to(path): p.read_bytes()
        for p in sorted(path.rglob('*')) if p.is_file()
    }


def test_a_run_holds_its_work_dir_and_leaves_nothing(tmp_path):
    work_dir = tmp_path / 'new'
    with WorkDirLock(work_dir, environ={}) as lock:
        record = json.loads((work_dir / LOCK_NAME).read_text())
        assert record == lock.record
        assert record['host'] == HOST and record['pid'] == os.getpid()
        assert 'slurm_job_id' not in record
        assert re.fullmatch(r'\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d',
                            record['started'])
    # A work dir it made and nobody wrote to goes again (a run that failed
    # before it wrote); one with the run's files stays, without the lock.
    assert not work_dir.exists()
    with WorkDirLock(work_dir, environ={}):
        (work_dir / 'iter_1.pth').write_bytes(b'x')
    assert _listing(work_dir) == {
        (work_dir / 'iter_1.pth').relative_to(work_dir): b'x'
    }


def test_a_second_run_is_refused_in_one_line_and_changes_nothing(tmp_path):
    slurm = {'SLURM_JOB_ID': '4242', 'SLURM_RESTART_COUNT': '0'}
    with WorkDirLock(tmp_path, environ=slurm) as first:
        before = _listing(tmp_path)
        for environ in ({}, {'SLURM_JOB_ID': '4343'}, slurm):
            # Another run, another job, a second step of the same job.
            second = WorkDirLock(tmp_path, environ=environ)
            with pytest.raises(WorkDirInUse) as refused:
                second.acquire()
            line = str(refused.value)
            assert '\n' not in line
            assert line == (
                f'work dir {tmp_path} is in use by a training run on host '
                f'{HOST} (pid {os.getpid()}, started '
                f'{first.record["started"]}, Slurm job 4242); wait for it '
                'to end or stop it (scancel 4242), or train into another '
                '--work-dir')
            assert not second.held
            second.release()  # nothing to let go: the first's file stays
            assert _listing(tmp_path) == before
    assert not (tmp_path / LOCK_NAME).exists()


def test_the_refusal_names_a_run_outside_slurm_and_on_another_host(tmp_path):
    record = dict(host='node7', pid=12, started='2025-01-02T03:04:05+00:00')
    line = worklock.refusal('work_dirs/x', record)
    assert line == (
        'work dir work_dirs/x is in use by a training run on host node7 '
        '(pid 12, started 2025-01-02T03:04:05+00:00); wait for it to end or '
        'stop it (kill 12 on node7), or train into another --work-dir (if '
        'node7 is gone for good and the file system kept its lock, delete '
        'work_dirs/x/.train.lock)')
    assert '(kill 12)' in worklock.refusal('w', dict(record, host=HOST))


def _child(body) -> int:
    """Fork a child that runs ``body`` and then waits to be killed."""
    pid = os.fork()
    if pid == 0:
        try:
            body()
            time.sleep(120)
        finally:
            os._exit(0)
    return pid


def _wait_for(condition, timeout=30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline
        time.sleep(0.01)


def test_a_killed_run_and_its_workers_leave_no_lock(tmp_path):
    """A run SIGKILLed with a forked data loader worker still winding down:
    the kernel drops the run's lock, and the worker holds none (it closed
    its copy of the fd), so the resume takes the lock without a word."""
    ready = tmp_path / 'ready'
    worker = tmp_path / 'worker'

    def run():
        lock = WorkDirLock(tmp_path / 'work', environ={})
        lock.acquire()
        worker.write_text(str(_child(lambda: None)))  # a loader worker
        ready.touch()

    pid = _child(run)
    try:
        _wait_for(ready.exists)
        with pytest.raises(WorkDirInUse):
            WorkDirLock(tmp_path / 'work', environ={}).acquire()
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        worker_pid = int(worker.read_text())
        os.kill(worker_pid, 0)  # still there
        stale = json.loads((tmp_path / 'work' / LOCK_NAME).read_text())
        assert stale['pid'] == pid
        with WorkDirLock(tmp_path / 'work', environ={}) as resumed:
            assert resumed.taken_over is None
            assert resumed.record['pid'] == os.getpid()
    finally:
        for child in (pid, int(worker.read_text() or 0)):
            with contextlib.suppress(OSError):  # already gone
                os.kill(child, signal.SIGKILL)


def test_a_requeued_slurm_job_takes_over_its_own_lock(tmp_path):
    old = WorkDirLock(
        tmp_path, environ={
            'SLURM_JOB_ID': '7',
            'SLURM_RESTART_COUNT': '0'
        })
    old.acquire()  # still held: Slurm is ending it, or its node is gone
    requeued = {'SLURM_JOB_ID': '7', 'SLURM_RESTART_COUNT': '1'}
    with WorkDirLock(tmp_path, environ=requeued) as new:
        assert new.taken_over == old.record
        record = json.loads((tmp_path / LOCK_NAME).read_text())
        assert record == new.record and record['slurm_restart_count'] == 1
        assert sorted(p.name for p in tmp_path.iterdir()) == [LOCK_NAME]
        # A second step of the requeued job is refused, naming it.
        with pytest.raises(WorkDirInUse, match=r'Slurm job 7 after 1 requeue'):
            WorkDirLock(tmp_path, environ=requeued).acquire()
        # The old incarnation's end leaves the new lock file alone.
        old.release()
        assert json.loads((tmp_path / LOCK_NAME).read_text()) == new.record
        with pytest.raises(WorkDirInUse):
            WorkDirLock(tmp_path, environ={}).acquire()
    assert not (tmp_path / LOCK_NAME).exists()


def test_a_file_system_without_locks_trains_unlocked(tmp_path, monkeypatch):
    """Lustre without -o flock answers flock with ENOSYS."""

    def no_locks(fd, operation):
        raise OSError(38, 'Function not implemented')

    monkeypatch.setattr(worklock.fcntl, 'flock', no_locks)
    with WorkDirLock(tmp_path, environ={}) as lock:
        assert not lock.held
        assert 'takes no locks (ENOSYS)' in lock.unsupported
        assert 'mount it with -o flock' in lock.unsupported
    assert not list(tmp_path.iterdir())


def test_every_rank_of_a_refused_distributed_run_stops(tmp_path):
    """Two gloo ranks: rank 0 finds the work dir held and tells rank 1;
    both exit with status 2, and only local rank 0 says why."""
    work_dir = tmp_path / 'work'

    def rank(number: int) -> None:
        os.environ['LOCAL_RANK'] = str(number)
        sys.stderr = open(tmp_path / f'{number}.err', 'w')
        torch_dist.init_process_group(
            'gloo',
            init_method=f'file://{tmp_path}/rendezvous',
            rank=number,
            world_size=2)
        cfg = Config(
            dict(
                launcher='pytorch',
                work_dir=str(work_dir),
                env_cfg=dict(dist_cfg=dict(backend='gloo'))))
        with hold_work_dir(cfg):
            pass

    with WorkDirLock(work_dir, environ={}):
        pids = [_fork_run(rank, number) for number in (0, 1)]
        for pid in pids:
            assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 2
    said = (tmp_path / '0.err').read_text().splitlines()
    assert len(said) == 1 and said[0].startswith(
        f'error: work dir {work_dir} is in use by a training run on host '
        f'{HOST} (pid {os.getpid()}, started '), said
    assert (tmp_path / '1.err').read_text() == ''


def _fork_run(body, *args) -> int:
    """Fork a child that runs ``body``; its exit status is that of a
    ``SystemExit`` it raises, 1 for another exception, else 0."""
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            body(*args)
        except SystemExit as done:
            code = done.code
        except BaseException:
            traceback.print_exc()
            code = 1
        finally:
            sys.stderr.flush()
            os._exit(code)
    return pid


def test_a_work_dir_that_cannot_be_made_is_one_line(tmp_path):
    taken = tmp_path / 'a_file'
    taken.write_text('')
    with pytest.raises(UserError) as refused:
        WorkDirLock(taken, environ={}).acquire()
    assert str(refused.value) == (
        f'cannot make work dir {taken}: File exists; pass a --work-dir you '
        'can write to')
