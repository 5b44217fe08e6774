# Copyright (c) Res2Net-MMDet contributors. All rights reserved.
"""Fixtures for the launcher scripts: running them, and killing one rank."""
import os
import signal
import subprocess
import time
from typing import Callable, Dict, Optional

import pytest


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
