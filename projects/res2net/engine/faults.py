# Copyright (c) Res2Net-MMDet contributors. All rights reserved.
"""The known faults that end a run after it started, each as one line.

Everything that can be checked before a run is checked then
(:mod:`~projects.res2net.engine.preflight`,
:mod:`~projects.res2net.datasets.dataset_check`). What only shows while it
runs is turned into one line here by :func:`run_faults`: the environment (a
full disk or quota, a read-only or forbidden folder, a file that vanished),
the data (an image that does not decode), the memory (the GPU's, or a data
loader worker killed for the host's). The line names the path and what to
free or fix, and the last good checkpoint to resume from. Anything else is
a bug and keeps its traceback.
"""
import contextlib
import errno
import os.path as osp
import re
import shutil
from typing import Iterator, Optional

import torch

from ..errors import UserError
from .preflight import latest_checkpoint


class RunFault(UserError):
    """A known fault of the environment or the data, met during a run."""


# What fills a disk or forbids a write, and what the user can do about it.
_STORAGE = {
    errno.ENOSPC: 'no space left on its disk',
    errno.EDQUOT: 'the disk quota is used up',
    errno.EROFS: 'its file system is read-only',
    errno.EACCES: 'permission denied',
    errno.EPERM: 'operation not permitted',
}
# mmcv's image loader on bytes that do not decode. A loader worker's error
# reaches the main process as text only, after a traceback that quotes the
# source line: the last match is the message.
_UNDECODABLE = re.compile(r'failed to load image: (\S+)')
# A file that is gone.
_MISSING = re.compile(r"No such file or directory: '([^']+)'")
# torch's data loader when the system killed one of its workers.
_WORKER_DIED = re.compile(r'DataLoader worker \(pid(?:\(s\))? [^)]*\) '
                          r'(exited unexpectedly|is killed by signal)')


def _free(path: str) -> str:
    """``'12.0 MB free'`` on the disk of ``path`` (its nearest folder)."""
    folder = path
    while folder and not osp.isdir(folder):
        folder = osp.dirname(folder)
    try:
        free = shutil.disk_usage(folder or '.').free
    except OSError:
        return 'free space unknown'
    return f'{free / 2**20:.1f} MB free'


def storage_fault(err: BaseException) -> Optional[str]:
    """One line for a write that the file system refused, else None."""
    if not isinstance(err, OSError) or err.errno not in _STORAGE:
        return None
    path = err.filename or 'a file of the run'
    cause = _STORAGE[err.errno]
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        fix = (f'free space there ({_free(str(path))}) or write the run to '
               'another disk with --work-dir')
    else:
        fix = ('make the folder writable for this user or write the run '
               'elsewhere with --work-dir')
    return f'cannot write {path}: {cause}; {fix}'


def data_fault(err: BaseException, config: str) -> Optional[str]:
    """One line for an image that does not decode or vanished, else None."""
    text = str(err)
    check = (f'find every such file with python tools/misc/check_dataset.py '
             f'{config} --images')
    found = _UNDECODABLE.findall(text)
    if found:
        return (f'{found[-1]}: the image does not decode (met while loading '
                f'the data); {check}, then mend or drop it')
    if isinstance(err, OSError) and err.errno == errno.ENOENT and \
            err.filename:
        missing = str(err.filename)
    else:
        found = _MISSING.findall(text) if isinstance(err,
                                                     (OSError,
                                                      RuntimeError)) else []
        missing = found[-1] if found else None
    if missing is None:
        return None
    return (f'{missing} vanished during the run (it was there when the run '
            f'started); restore it; {check}')


def memory_fault(err: BaseException) -> Optional[str]:
    """One line for memory that ran out, else None."""
    if isinstance(err, torch.cuda.OutOfMemoryError):
        return ('the GPU ran out of memory; lower '
                'train_dataloader.batch_size (with --auto-scale-lr for the '
                'lr), train with --amp, or set model.backbone.with_cp=True')
    if isinstance(err, RuntimeError) and _WORKER_DIED.search(str(err)):
        return ('a data loader worker was killed (the host out of memory?); '
                'lower train_dataloader.num_workers or '
                'train_dataloader.batch_size')
    return None


@contextlib.contextmanager
def run_faults(config: str, work_dir: Optional[str] = None) -> Iterator[None]:
    """Turn the known faults of a running tool into one line
    (:class:`RunFault`) that names the last good checkpoint of
    ``work_dir`` (a training run's) to resume from."""
    try:
        yield
    except UserError:
        raise
    except Exception as err:
        line = storage_fault(err) or data_fault(err, config) or \
            memory_fault(err)
        if line is None:
            raise
        if work_dir is not None:
            last = latest_checkpoint(work_dir)
            line += (f'; the last good checkpoint is {last}: go on from it '
                     'with --resume'
                     if last else '; no checkpoint was saved yet')
        raise RunFault(line) from err
