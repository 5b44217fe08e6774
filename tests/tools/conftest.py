# Copyright (c) Res2Net-MMDet contributors. All rights reserved.
"""Fixtures of the tool tests: the launcher scripts (running them, killing
one rank) and a zoo demo run whose work dirs the table tests read."""
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Callable, Dict, NamedTuple, Optional

import pytest

FASTER = 'configs/faster_rcnn_r2_101_fpn_2x.py'
MASK = 'configs/mask_rcnn_r2_101_fpn_2x.py'


class ZooDemo(NamedTuple):
    """A finished ``tools/misc/zoo_demo.py`` run.

    Attributes:
        root: Its ``--work-dir``.
        result: The process: its table on stdout.
        work_dirs: The work dir of each config, by config path.
    """
    root: Path
    result: subprocess.CompletedProcess
    work_dirs: Dict[str, Path]


@pytest.fixture(scope='session')
def zoo_demo(tmp_path_factory, run_tool, tiny_demo_data) -> ZooDemo:
    """``zoo_demo.py`` on Faster and Mask R2-101 and the tiny demo data:
    train.py (one step), test.py and benchmark.py into a work dir each, then
    benchmark_table.py over them."""
    root = tmp_path_factory.mktemp('zoo_demo')
    result = run_tool('misc/zoo_demo.py', '--configs', FASTER, MASK, '--data',
                      tiny_demo_data, '--work-dir', root, '--scale', 160,
                      '--train-images', 2, '--test-images', 2, '--warmup', 1)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr
    return ZooDemo(
        root, result,
        {config: root / Path(config).stem
         for config in (FASTER, MASK)})


@pytest.fixture(scope='session')
def run_script(repo) -> Callable[..., subprocess.CompletedProcess]:
    """Run ``tools/<script>`` with ``env``, from the repo root."""

    def run(script: str,
            *args,
            env: Dict[str, str],
            timeout: float = 900) -> subprocess.CompletedProcess:
        return subprocess.run([str(repo / 'tools' / script), *map(str, args)],
                              cwd=repo,
                              env=env,
                              capture_output=True,
                              text=True,
                              timeout=timeout)

    return run


def _environ(pid: int) -> Dict[str, str]:
    try:
        with open(f'/proc/{pid}/environ', 'rb') as f:
            entries = f.read().split(b'\0')
    except OSError:  # gone, or not ours to read
        return {}
    pairs = (
        entry.decode(errors='replace').partition('=') for entry in entries
        if b'=' in entry)
    return {key: value for key, _, value in pairs}


def _find_process(marker: str, rank_variable: str, rank: int) -> Optional[int]:
    """The Python process started with ``marker`` and the given rank."""
    for name in os.listdir('/proc'):
        if not name.isdigit():
            continue
        env = _environ(int(name))
        if env.get('RES2NET_TEST_RUN') == marker and \
                env.get(rank_variable) == str(rank):
            with open(f'/proc/{name}/cmdline', 'rb') as f:
                if b'python' in f.read().split(b'\0')[0]:
                    return int(name)
    return None


@pytest.fixture
def kill_rank_mid_training(repo, tmp_path) -> Callable[..., dict]:
    """Start a training job, SIGKILL one rank once it trains, time the end.

    ``kill(command, env, rank_variable)`` starts ``command`` (a launcher
    script) with ``env``, waits for the first logged training iteration,
    kills the Python process of rank 1 (found by ``rank_variable`` in its
    environment) and returns ``dict(returncode, seconds, log)``: the job's
    exit status and how long it took to end after the kill.
    """
    started = []

    def kill(command, env: Dict[str, str], rank_variable: str) -> dict:
        marker = f'{os.getpid()}-{time.time()}'
        log_path = tmp_path / 'job.log'
        with open(log_path, 'w') as log:
            job = subprocess.Popen([str(c) for c in command],
                                   cwd=repo,
                                   env=dict(env, RES2NET_TEST_RUN=marker),
                                   stdout=log,
                                   stderr=subprocess.STDOUT,
                                   start_new_session=True)
        started.append(job)
        deadline = time.monotonic() + 600
        while 'Iter(train)' not in log_path.read_text():
            assert job.poll() is None, log_path.read_text()[-3000:]
            assert time.monotonic() < deadline, 'no training iteration'
            time.sleep(0.5)
        victim = _find_process(marker, rank_variable, 1)
        assert victim is not None, 'rank 1 not found'
        os.kill(victim, signal.SIGKILL)
        killed = time.monotonic()
        try:
            returncode = job.wait(timeout=120)
        except subprocess.TimeoutExpired:
            returncode = None
        return dict(
            returncode=returncode,
            seconds=time.monotonic() - killed,
            log=log_path.read_text())

    yield kill
    for job in started:  # whatever happened, leave nothing running
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGKILL)
            job.wait()
