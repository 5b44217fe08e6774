# Copyright (c) Res2Net-MMDet contributors. All rights reserved.
"""One training run per work dir: a lock held for the run's life.

Two runs on one work dir (a duplicate Slurm job, a requeue that races its
old job, a second terminal) would both write ``iter_N.pth`` and
``last_checkpoint`` there. ``tools/train.py`` therefore holds
:class:`WorkDirLock` on its work dir from its config to its end, and a
second run stops before it writes anything, in one line naming the run that
holds it (:class:`WorkDirInUse`).

The lock is ``flock(LOCK_EX | LOCK_NB)`` on ``WORK_DIR/.train.lock``, an
fd kept open for the run's life. The kernel drops it when the process dies,
SIGKILL included, so a killed run never blocks its resume and nothing needs
to be said about it: no stale-lock rule, no age, no clock. What the file
holds (host, pid, start, Slurm job and restart count) only names the holder
in the refusal, and lets a requeued Slurm job take over the lock of its own
earlier incarnation (same job id, fewer restarts), which Slurm is ending
or which was on a node that is gone. Forked children (the data loader's
workers) close their copy of the fd, so that a killed run's orphaned
workers do not hold its lock while they wind down.

What it guarantees depends on the file system (docs/train_test.md): on a
local disk and across the nodes of NFS (the Linux client maps ``flock`` to
NFS byte-range locks) or Lustre mounted with ``-o flock``; on one node only
with Lustre's ``localflock`` or NFS's ``local_lock=flock|all``.
"""
import contextlib
import datetime
import errno
import fcntl
import json
import os
import os.path as osp
import socket
import sys
import time
import weakref
from typing import Any, Dict, Iterator, Mapping, Optional

import torch.distributed as torch_dist
from mmengine.config import Config

from ..errors import UserError
from .dist import init_process_group
from .faults import storage_fault

LOCK_NAME = '.train.lock'

# A holder writes its record right after it takes the lock; one that is
# read in that moment is empty. How long to wait for it.
_RECORD_WAIT_S = 2.0
# flock errors that mean "this file system has no locks", not "held".
_NO_LOCKS = (errno.ENOLCK, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL)


class WorkDirInUse(UserError):
    """Another training run holds the work dir's lock."""


def run_record(environ: Mapping[str, str] = os.environ) -> Dict[str, Any]:
    """What names this run in its lock file: host, pid, start (ISO 8601,
    local time with its offset), and its Slurm job and restart count where
    it runs in one."""
    record: Dict[str, Any] = dict(
        host=socket.gethostname(),
        pid=os.getpid(),
        started=datetime.datetime.now().astimezone().isoformat(
            timespec='seconds'))
    if environ.get('SLURM_JOB_ID'):
        record['slurm_job_id'] = environ['SLURM_JOB_ID']
        record['slurm_restart_count'] = int(
            environ.get('SLURM_RESTART_COUNT') or 0)
    return record


def describe(record: Mapping[str, Any]) -> str:
    """``host H (pid P, started T, Slurm job J)``: a run, by its record."""
    details = [
        f'pid {record.get("pid", "?")}',
        f'started {record.get("started", "?")}'
    ]
    if record.get('slurm_job_id'):
        details.append(f'Slurm job {record["slurm_job_id"]}')
        if record.get('slurm_restart_count'):
            details[-1] += (f' after {record["slurm_restart_count"]} '
                            'requeue(s)')
    return f'host {record.get("host", "?")} ({", ".join(details)})'


def refusal(work_dir: str, record: Optional[Mapping[str, Any]]) -> str:
    """The one line that stops a second run on ``work_dir``."""
    if not record:
        return (f'work dir {work_dir} is in use by another training run '
                f'(its {LOCK_NAME} is locked but names no run yet); wait for '
                'it to end, or train into another --work-dir')
    job, pid, host = (record.get('slurm_job_id'), record.get('pid'),
                      record.get('host'))
    here = host == socket.gethostname()
    stop = f'kill {pid}' if here else f'kill {pid} on {host}'
    if job:
        stop = f'scancel {job}'
    line = (f'work dir {work_dir} is in use by a training run on '
            f'{describe(record)}; wait for it to end or stop it ({stop}), '
            'or train into another --work-dir')
    if not here:
        # The one case the kernel cannot settle: an NFSv3 server keeps the
        # locks of a client that never comes back.
        line += (f' (if {host} is gone for good and the file system kept '
                 f'its lock, delete {osp.join(work_dir, LOCK_NAME)})')
    return line


def read_record(path: str) -> Optional[Dict[str, Any]]:
    """The record of a lock file; None if there is none (yet) or it is not
    one."""
    try:
        with open(path, encoding='utf-8') as f:
            record = json.loads(f.read())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def _unwritable(err: OSError, what: str) -> UserError:
    """One line for a work dir the run cannot write to, worded as a
    write refused during the run is (:func:`~.faults.storage_fault`)."""
    return UserError(
        storage_fault(err) or f'cannot {what}: {err.strerror}; pass a '
        '--work-dir you can write to')


def _same_file(fd: int, path: str) -> bool:
    """Whether ``path`` still names the file open as ``fd`` (a lock file
    removed or replaced meanwhile names another, or none)."""
    try:
        here, there = os.fstat(fd), os.stat(path)
    except FileNotFoundError:
        return False
    return (here.st_dev, here.st_ino) == (there.st_dev, there.st_ino)


# The locks this process holds: a forked child closes their fds (below).
_HELD: 'weakref.WeakSet[WorkDirLock]' = weakref.WeakSet()


def _forget_in_child() -> None:
    """A forked child (a data loader worker) closes its copies of the held
    locks' fds. A flock lock belongs to the open file, which a fork shares:
    a killed run's workers, which take seconds to notice, would hold its
    lock until they end and refuse the resume that follows."""
    for lock in list(_HELD):
        if lock._fd is not None:
            with contextlib.suppress(OSError):
                os.close(lock._fd)
            lock._fd = None
    _HELD.clear()


os.register_at_fork(after_in_child=_forget_in_child)


class WorkDirLock:
    """The training lock of a work dir, for one process.

    Args:
        work_dir: The run's work dir; made if it is not there.
        environ: The environment that names the run's Slurm job.

    Use it as a context manager, or :meth:`acquire` and :meth:`release`.
    A work dir that :meth:`acquire` made is removed again on release if
    nothing else was written to it (a run that failed before it wrote).
    """

    def __init__(self,
                 work_dir: str,
                 environ: Mapping[str, str] = os.environ) -> None:
        self.work_dir = str(work_dir)
        self.path = osp.join(self.work_dir, LOCK_NAME)
        self.environ = environ
        self.record: Optional[Dict[str, Any]] = None
        self.taken_over: Optional[Dict[str, Any]] = None
        self.unsupported: Optional[str] = None
        self._fd: Optional[int] = None
        self._made_dir = False

    @property
    def held(self) -> bool:
        """Whether this process holds the lock now."""
        return self._fd is not None

    def acquire(self) -> None:
        """Take the lock, or take it over from an earlier incarnation of
        this Slurm job, and write this run's record into it.

        On a file system without locks (Lustre without ``-o flock``) the
        run goes on unlocked; :attr:`unsupported` says why.

        Raises:
            WorkDirInUse: Another run holds it.
            UserError: The work dir or its lock file cannot be made.
        """
        existed = osp.isdir(self.work_dir)
        try:
            os.makedirs(self.work_dir, exist_ok=True)
        except OSError as err:
            raise _unwritable(err, f'make work dir {self.work_dir}') from err
        self._made_dir = not existed
        while True:
            fd = self._open(self.path, os.O_CREAT)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as err:
                os.close(fd)
                if err.errno in _NO_LOCKS:
                    self.unsupported = (
                        f'{self.path}: this file system takes no locks '
                        f'({errno.errorcode.get(err.errno, err.errno)}), so '
                        'a second run on this work dir would not be stopped '
                        '(Lustre: mount it with -o flock)')
                    # Nothing left behind: an empty file names no run.
                    with contextlib.suppress(OSError):
                        if not osp.getsize(self.path):
                            os.unlink(self.path)
                    return
                if err.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                    raise UserError(f'cannot lock {self.path}: '
                                    f'{err.strerror}') from err
                holder = self._holder()
                if not self._may_take_over(holder):
                    raise WorkDirInUse(refusal(self.work_dir, holder)) \
                        from None
                fd = self._take_over()
                self.taken_over = holder
                break
            # The holder before may have removed the file between our open
            # and our lock: then the lock is on a file nobody sees; again.
            if _same_file(fd, self.path):
                break
            os.close(fd)
        self._fd = fd
        _HELD.add(self)
        self.record = run_record(self.environ)
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(self.record).encode(), 0)
            os.fsync(fd)  # on NFS: for the refusal of a run on another node
        except OSError:
            # A full disk: the lock holds without its record (a refusal then
            # names no run), and the run's first write says what to free.
            pass

    def release(self) -> None:
        """Remove the lock file (unless a later incarnation has replaced
        it) and let go; a work dir that acquire made and that stayed empty
        goes too. Nothing happens if the lock is not held."""
        fd, self._fd = self._fd, None
        _HELD.discard(self)
        if fd is not None:
            if _same_file(fd, self.path):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.path)
            os.close(fd)  # the lock goes with the last fd of the file
        if self._made_dir:
            self._made_dir = False
            with contextlib.suppress(OSError):  # not empty: the run wrote
                os.rmdir(self.work_dir)

    def __enter__(self) -> 'WorkDirLock':
        self.acquire()
        return self

    def __exit__(self, *exc_info) -> None:
        self.release()

    def _open(self, path: str, flags: int) -> int:
        try:
            # Not inherited by programs this run starts (os.open's fds are
            # close-on-exec): a lock for this run's processes only.
            return os.open(path, os.O_RDWR | flags, 0o644)
        except OSError as err:
            raise _unwritable(err, f'open {path}') from err

    def _holder(self) -> Optional[Dict[str, Any]]:
        """The record of the run that holds the lock, waiting briefly for
        one that has just taken it to write it."""
        deadline = time.monotonic() + _RECORD_WAIT_S
        while True:
            record = read_record(self.path)
            if record or time.monotonic() > deadline:
                return record
            time.sleep(0.05)

    def _may_take_over(self, holder: Optional[Mapping[str, Any]]) -> bool:
        """A requeued Slurm job takes over the lock of its own earlier
        incarnation: Slurm is ending that one, or it ran on a node that is
        gone and whose lock the file system still keeps. A second step of
        the same incarnation (the same restart count) does not."""
        job = self.environ.get('SLURM_JOB_ID')
        if not (job and holder and holder.get('slurm_job_id') == job):
            return False
        restarts = int(self.environ.get('SLURM_RESTART_COUNT') or 0)
        return restarts > int(holder.get('slurm_restart_count') or 0)

    def _take_over(self) -> int:
        """A fresh lock file, locked before it replaces the old one
        (atomically: a third run sees one or the other, locked either way);
        the old incarnation keeps a lock on a file nobody opens any more."""
        temporary = f'{self.path}.{socket.gethostname()}.{os.getpid()}'
        fd = self._open(temporary, os.O_CREAT | os.O_TRUNC)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.replace(temporary, self.path)
        except BaseException:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise
        return fd


def _rank() -> int:
    return torch_dist.get_rank() if torch_dist.is_available() and \
        torch_dist.is_initialized() else 0


@contextlib.contextmanager
def hold_work_dir(cfg: Config) -> Iterator[WorkDirLock]:
    """Hold ``cfg.work_dir``'s training lock for the run's life, on every
    rank of a distributed run.

    A distributed run joins its process group here (the Runner then skips
    its own ``init_dist``): rank 0 takes the lock and tells the others how
    it went, so that every rank of a refused run stops the same way, with
    the one line printed once a node (by local rank 0) and exit status 2.

    Raises:
        WorkDirInUse: Another run holds the work dir (one process).
        SystemExit: The same, on every rank of a distributed run, with
            status 2, once the line is printed.
    """
    if cfg.launcher != 'none':
        init_process_group(cfg.launcher, cfg.env_cfg.dist_cfg)
    lock = WorkDirLock(cfg.work_dir)
    error: Optional[UserError] = None
    if _rank() == 0:
        try:
            lock.acquire()
        except UserError as err:
            error = err
        else:
            if lock.taken_over:
                print(
                    f'{lock.path}: taken over from this Slurm job\'s '
                    f'earlier run on {describe(lock.taken_over)}, which '
                    'the requeue ends',
                    file=sys.stderr)
            if lock.unsupported:
                print(f'warning: {lock.unsupported}', file=sys.stderr)
    distributed = torch_dist.is_available() and torch_dist.is_initialized()
    if error is not None and not distributed:
        raise error
    if distributed:
        box = [None if error is None else str(error)]
        torch_dist.broadcast_object_list(box, src=0)
        outcome = box[0]
        if outcome is not None:
            # The line once a node, as run_tool prints a UserError, before
            # any rank exits: torchrun and srun end the others as soon as
            # one does.
            if _rank() == 0 or os.environ.get('LOCAL_RANK', '0') == '0':
                print(f'error: {outcome}', file=sys.stderr, flush=True)
            torch_dist.barrier()
            raise SystemExit(2)
    try:
        yield lock
    finally:
        lock.release()
