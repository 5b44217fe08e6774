# Copyright (c) Res2Net-MMDet contributors. All rights reserved.
"""projects/res2net/engine/faults.py: the known faults met during a run as
one line each, with the last good checkpoint; anything else keeps its
traceback. Through tools/train.py (a full disk, an image that does not
decode): tests/tools/test_train_test.py."""
import errno
import os
import re
import shutil
import signal
import time
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from projects.res2net.engine.faults import (RunFault, data_fault, memory_fault,
                                            run_faults, storage_fault)

CONFIG = 'configs/demo/faster_rcnn_r2_50_fpn_demo.py'


@pytest.mark.parametrize('code, said', [
    (errno.ENOSPC, 'no space left on its disk; free space there ('),
    (errno.EDQUOT, 'the disk quota is used up; free space there ('),
    (errno.EROFS, 'its file system is read-only; make the folder writable'),
    (errno.EACCES, 'permission denied; make the folder writable'),
    (errno.EPERM, 'operation not permitted; make the folder writable'),
])
def test_a_refused_write_names_the_file_and_the_fix(tmp_path, code, said):
    err = OSError(code, 'refused', str(tmp_path / 'iter_4.pth'))
    line = storage_fault(err)
    assert line.startswith(f'cannot write {tmp_path}/iter_4.pth: {said}')
    assert storage_fault(OSError(errno.EBADF, 'bad')) is None


def test_the_free_space_is_said_or_said_unknown(tmp_path, monkeypatch):
    # The work dir's folder may be gone: the space is its nearest folder's.
    full = OSError(errno.ENOSPC, 'full', str(tmp_path / 'gone' / 'i.pth'))
    assert re.search(
        r'; free space there \(\d+\.\d MB free\) or write the '
        'run to another disk with --work-dir$', storage_fault(full))

    # A file system that cannot say (a network one gone stale): the line
    # still comes, rather than a second error in place of the first.
    def unreadable(path: str) -> None:
        raise OSError(errno.EIO, 'Input/output error', path)

    monkeypatch.setattr(shutil, 'disk_usage', unreadable)
    assert storage_fault(full) == (
        f'cannot write {tmp_path}/gone/i.pth: no space left on its disk; '
        'free space there (free space unknown) or write the run to another '
        'disk with --work-dir')


def test_data_faults_name_the_file_and_the_check():
    check = ('find every such file with python tools/misc/check_dataset.py '
             f'{CONFIG} --images')
    # mmcv's loader, in the main process or in a worker (torch passes the
    # worker's error on as text).
    for err in (AssertionError('failed to load image: data/x/7.jpg'),
                AssertionError('Caught AssertionError in DataLoader worker '
                               'process 0.\nOriginal Traceback (most recent '
                               "call last):\n    assert img is not None, "
                               "f'failed to load image: {filename}'\n"
                               'AssertionError: failed to load image: '
                               'data/x/7.jpg\n')):
        assert data_fault(err, CONFIG) == (
            f'data/x/7.jpg: the image does not decode (met while loading '
            f'the data); {check}, then mend or drop it')
    for err in (FileNotFoundError(errno.ENOENT, 'No such file or directory',
                                  'data/x/8.jpg'),
                FileNotFoundError('Caught FileNotFoundError in DataLoader '
                                  'worker process 0.\n...FileNotFoundError: '
                                  "[Errno 2] No such file or directory: "
                                  "'data/x/8.jpg'\n")):
        assert data_fault(err, CONFIG) == (
            'data/x/8.jpg vanished during the run (it was there when the run '
            f'started); restore it; {check}')
    assert data_fault(AssertionError('shapes differ'), CONFIG) is None
    assert data_fault(KeyError('No such file or directory: \'x\''),
                      CONFIG) is None


def test_memory_faults_say_what_to_lower():
    assert 'lower train_dataloader.batch_size' in memory_fault(
        torch.cuda.OutOfMemoryError('CUDA out of memory. Tried to allocate'))
    # torch's words when the loader was waiting for the worker.
    assert 'lower train_dataloader.num_workers' in memory_fault(
        RuntimeError('DataLoader worker (pid(s) 4242) exited unexpectedly'))
    assert memory_fault(RuntimeError('shape mismatch')) is None


class _KilledWhenTold(Dataset):
    """Two items; the worker loading the second is killed (SIGKILL, as the
    kernel's out-of-memory killer ends one) once the file ``go`` exists."""

    def __init__(self, go: Path) -> None:
        self.go = go

    def __len__(self) -> int:
        return 2

    def __getitem__(self, index: int) -> int:
        if index == 1:
            while not self.go.exists():
                time.sleep(0.005)
            os.kill(os.getpid(), signal.SIGKILL)
        return index


def test_a_worker_killed_during_a_step_says_what_to_lower(tmp_path):
    # torch's words when the worker dies while the main process computes (a
    # training step): its SIGCHLD handler raises them there.
    go = tmp_path / 'go'
    batches = iter(DataLoader(_KilledWhenTold(go), num_workers=1))
    try:
        with pytest.raises(RunFault) as fault:
            with run_faults(CONFIG):
                next(batches)
                go.touch()
                for _ in range(1000):  # the step, ended by the handler
                    time.sleep(0.01)
    finally:
        go.touch()
        # The dead worker is forgotten: torch's handler would raise again
        # on any later child's exit.
        batches._shutdown_workers()
    assert 'is killed by signal: Killed' in str(fault.value.__cause__)
    assert str(fault.value) == (
        'a data loader worker was killed (the host out of memory?); lower '
        'train_dataloader.num_workers or train_dataloader.batch_size')


def test_a_fault_names_the_last_good_checkpoint(tmp_path):
    with pytest.raises(RunFault, match='; no checkpoint was saved yet$'):
        with run_faults(CONFIG, str(tmp_path)):
            raise OSError(errno.ENOSPC, 'full', str(tmp_path / 'iter_2.pth'))
    (tmp_path / 'iter_2.pth').write_bytes(b'')
    with pytest.raises(RunFault) as fault:
        with run_faults(CONFIG, str(tmp_path)):
            raise OSError(errno.ENOSPC, 'full', str(tmp_path / 'iter_4.pth'))
    assert str(fault.value).endswith(
        f'; the last good checkpoint is {tmp_path}/iter_2.pth: go on from it'
        ' with --resume')
    # A test run has no checkpoint to name.
    with pytest.raises(RunFault, match=r'--images, then mend or drop it$'):
        with run_faults(CONFIG):
            raise AssertionError('failed to load image: a.jpg')


def test_a_bug_keeps_its_traceback():
    with pytest.raises(ZeroDivisionError):
        with run_faults(CONFIG):
            1 / 0
