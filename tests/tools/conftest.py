# Copyright (c) Res2Net-MMDet contributors. All rights reserved.
"""Fixtures of the tool tests: the launcher scripts (running them, killing
one rank), a zoo demo run whose work dirs the table tests read, and a
one-node Slurm cluster.

The cluster is started here: Debian's slurm-wlm and munge, a one-node
slurm.conf written for this machine, then munged, slurmctld and slurmd, in
that order. It needs root and Debian's packages; elsewhere the tests that
use it skip and say why. Jobs on it are CPU processes (``GRES=none``).
"""
import errno
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Callable, Dict, Iterator, NamedTuple, Optional, TypeVar

import pytest

FASTER = 'configs/faster_rcnn_r2_101_fpn_2x.py'
MASK = 'configs/mask_rcnn_r2_101_fpn_2x.py'
T = TypeVar('T')


class ZooDemo(NamedTuple):
    """A finished ``tools/misc/zoo_demo.py`` run.

    Attributes:
        root: Its ``--work-dir``.
        result: The process: its table on stdout.
        work_dirs: The work dir of each config, by config path.
        args: Its arguments after ``--configs CONFIG...``.
    """
    root: Path
    result: subprocess.CompletedProcess
    work_dirs: Dict[str, Path]
    args: tuple


def _wait_until(ready: Callable[[], T],
                what: str,
                *,
                timeout: float = 60,
                poll: float = 0.5,
                process: Optional[subprocess.Popen] = None,
                output: Optional[Path] = None) -> T:
    """Poll ``ready()`` until it returns something true, and return that.

    Fails the test after ``timeout`` seconds, or as soon as ``process`` (the
    job that should get there) has ended; the failure names ``what`` and
    shows the end of ``output`` (its log), or of its piped output.
    """
    deadline = time.monotonic() + timeout
    while True:
        found = ready()
        if found:
            return found
        if process is not None and process.poll() is not None:
            if output is not None:
                shown = output.read_text()
            else:
                shown = ''.join(text or '' for text in process.communicate())
            pytest.fail(f'{what}: the process ended first (exit '
                        f'{process.returncode}):\n{shown[-3000:]}')
        if time.monotonic() > deadline:
            pytest.fail(f'waited {timeout} s for {what}')
        time.sleep(poll)


@pytest.fixture(scope='session')
def wait_until() -> Callable[..., object]:
    """Poll until something is so: see :func:`_wait_until`."""
    return _wait_until


@pytest.fixture(scope='session')
def zoo_demo(session_ram_dir, call_tool, tiny_demo_data) -> ZooDemo:
    """``zoo_demo.py`` on Faster and Mask R2-101 and the tiny demo data:
    train.py (one step), test.py and benchmark.py into a work dir each, then
    benchmark_table.py over them; in memory (a GB of checkpoints)."""
    root = session_ram_dir / 'zoo_demo'
    root.mkdir()
    # The tiny data at the tools' smallest default size; one image to train
    # on, one to test and benchmark after one warm-up image: an untrained
    # Mask R-CNN runs its mask head on 100 detections an image.
    args = ('--data', tiny_demo_data, '--work-dir', root, '--scale', 128,
            '--train-images', 1, '--test-images', 1, '--warmup', 1)
    result = call_tool('misc/zoo_demo.py', '--configs', FASTER, MASK, *args)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr
    return ZooDemo(
        root, result,
        {config: root / Path(config).stem
         for config in (FASTER, MASK)}, args)


@pytest.fixture(scope='session')
def linked_copy() -> Callable[[Path, Path], Path]:
    """``linked_copy(src, dst)``: a copy of the folder ``src`` whose files
    are hard links (nothing written again; a test replaces a file before it
    changes it), or copies where ``dst`` is on another file system."""

    def link_or_copy(src: str, dst: str) -> None:
        try:
            os.link(src, dst)
        except OSError as err:
            if err.errno != errno.EXDEV:
                raise
            shutil.copy2(src, dst)

    def copy(src: Path, dst: Path) -> Path:
        return Path(shutil.copytree(src, dst, copy_function=link_or_copy))

    return copy


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

    ``kill(command, env, rank_variable, signum=SIGKILL)`` starts
    ``command`` (a launcher script) with ``env``, waits for the first logged
    training iteration, sends ``signum`` to the Python process of rank 1
    (found by ``rank_variable`` in its environment) and returns
    ``dict(returncode, seconds, log)``: the job's exit status and how long
    it took to end after the signal.
    """
    started = []

    def kill(command,
             env: Dict[str, str],
             rank_variable: str,
             signum: int = signal.SIGKILL) -> dict:
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
        _wait_until(
            lambda: 'Iter(train)' in log_path.read_text(),
            'a training iteration',
            timeout=600,
            process=job,
            output=log_path)
        victim = _find_process(marker, rank_variable, 1)
        assert victim is not None, 'rank 1 not found'
        os.kill(victim, signum)
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


PARTITION = 'cpu'  # the test cluster's one partition
MUNGE_RUN_DIR = Path('/run/munge')
MUNGE_KEY = Path('/etc/munge/munge.key')
DAEMONS = ('srun', 'slurmctld', 'slurmd', 'munged', 'munge')


def _sh(*command, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        command, capture_output=True, text=True, check=False, **kwargs)


def _install() -> Optional[str]:
    """Install slurm-wlm and munge if missing; the reason if impossible."""
    if all(shutil.which(name) for name in DAEMONS):
        return None
    if os.geteuid() != 0:
        return 'installing slurm-wlm and munge needs root'
    if not shutil.which('apt-get'):
        return "installing slurm-wlm and munge needs Debian's apt-get"
    env = dict(os.environ, DEBIAN_FRONTEND='noninteractive')
    for command in (['apt-get', 'update', '-qq'], [
            'apt-get', 'install', '-y', '-qq', '--no-install-recommends',
            'slurm-wlm', 'munge'
    ]):
        done = _sh(*command, env=env, timeout=900)
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ['?'])[-1]
            return f'{" ".join(command)} failed: {last}'
    return None


def _munge_works() -> bool:
    token = _sh('munge', '-n')
    return token.returncode == 0 and \
        _sh('unmunge', input=token.stdout).returncode == 0


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie that nobody reaps does not count)."""
    try:
        stat = Path(f'/proc/{pid}/stat').read_text()
    except OSError:
        return False
    return stat.rpartition(')')[2].split()[0] != 'Z'


def _pid(path: Path) -> int:
    """The pid a daemon writes to ``path``: the daemon creates the file
    before it writes the number, so an empty file means "not yet"."""

    def written() -> bool:
        try:
            return path.read_text().strip().isdigit()
        except FileNotFoundError:
            return False

    _wait_until(written, f'{path} to be written')
    return int(path.read_text().strip())


def _start_munge() -> Optional[int]:
    """Start munged as the munge user: its pid, or None if one runs."""
    if _munge_works():
        return None
    if not MUNGE_KEY.exists():
        subprocess.run(['runuser', '-u', 'munge', '--', 'mungekey', '-c'],
                       check=True)
    subprocess.run([
        'install', '-d', '-o', 'munge', '-g', 'munge', '-m', '0755',
        str(MUNGE_RUN_DIR)
    ],
                   check=True)
    subprocess.run(['runuser', '-u', 'munge', '--', 'munged'], check=True)
    _wait_until(_munge_works, 'munged to answer')
    return _pid(MUNGE_RUN_DIR / 'munged.pid')


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(('', 0))
        return sock.getsockname()[1]


def _slurm_conf(state: Path) -> str:
    host = socket.gethostname().split('.')[0]
    # What slurmd itself detects (CPUs, sockets, memory) for this node.
    node = _sh('slurmd', '-C').stdout.splitlines()[0]
    return '\n'.join([
        'ClusterName=res2net-test',
        f'SlurmctldHost={host}',
        'AuthType=auth/munge',
        # A requeued job waits this long (+1 s) before it may start again,
        # Slurm's default 120 s; its old credential is revoked until then.
        'AuthInfo=cred_expire=10',
        'CredType=cred/munge',
        'SlurmUser=root',
        f'SlurmctldPort={_port()}',
        f'SlurmdPort={_port()}',
        # No cgroups in a container: plain process tracking, no binding.
        'ProctrackType=proctrack/linuxproc',
        'TaskPlugin=task/none',
        'MpiDefault=none',
        # srun's nice value reaches its tasks (Slurm's default: slurmd's):
        # a job that only has to train while a test waits on Slurm runs
        # niced, leaving the CPU to the other tests.
        'PropagatePrioProcess=1',
        'ReturnToService=2',
        'SchedulerType=sched/builtin',
        # A requeued job becomes eligible when its hold ends, with no event
        # that starts the scheduler: its periodic pass (default every 60 s)
        # starts it. Every second here: the job waited 18 s for it.
        'SchedulerParameters=sched_interval=1',
        'SelectType=select/cons_tres',
        'SelectTypeParameters=CR_CPU',
        'JobCompType=jobcomp/none',
        'AccountingStorageType=accounting_storage/none',
        f'StateSaveLocation={state}/ctld',
        f'SlurmdSpoolDir={state}/spool',
        f'SlurmctldPidFile={state}/slurmctld.pid',
        f'SlurmdPidFile={state}/slurmd.pid',
        f'SlurmctldLogFile={state}/slurmctld.log',
        f'SlurmdLogFile={state}/slurmd.log',
        f'{node} State=UNKNOWN',
        f'PartitionName={PARTITION} Nodes={host} Default=YES '
        'MaxTime=INFINITE State=UP',
        '',
    ])


@pytest.fixture(scope='session')
def slurm(tmp_path_factory) -> Iterator[Dict[str, str]]:
    """A one-node Slurm cluster; yields the environment that reaches it."""
    if os.geteuid() != 0:
        pytest.skip('starting slurmctld and slurmd needs root')
    reason = _install()
    if reason:
        pytest.skip(reason)
    if (os.cpu_count() or 1) < 2:
        pytest.skip('two tasks of one CPU each need two CPUs')

    state = tmp_path_factory.mktemp('slurm')
    for sub in ('ctld', 'spool'):
        (state / sub).mkdir()
    conf = state / 'slurm.conf'
    conf.write_text(_slurm_conf(state))
    env = dict(os.environ, SLURM_CONF=str(conf))
    munged = _start_munge()
    daemons = [munged] if munged else []
    try:
        for daemon in ('slurmctld', 'slurmd'):
            subprocess.run([daemon], env=env, check=True)
            daemons.append(_pid(state / f'{daemon}.pid'))
        _wait_until(
            lambda: _sh('sinfo', '-h', '-o', '%T', env=env).stdout.strip() ==
            'idle', 'the node to be idle')
        yield env
    finally:
        for job in _sh('squeue', '-h', '-o', '%i', env=env).stdout.split():
            _sh('scancel', job, env=env)
        _sh('scontrol', 'shutdown', env=env)
        if munged:
            _sh('kill', str(munged))
        for pid in daemons:
            _wait_until(lambda: not _alive(pid), f'process {pid} to end')


@pytest.fixture
def slurm_env(slurm, launcher_env) -> Dict[str, str]:
    """mmdet's Slurm variables for 2 CPU tasks on this one node, and
    PARTITION, the cluster's partition.

    The test cluster declares no GPUs (no GRES), so the tasks are CPU
    processes over gloo on any machine.
    """
    return dict(
        launcher_env,
        SLURM_CONF=slurm['SLURM_CONF'],
        GPUS='2',
        GPUS_PER_NODE='2',
        CPUS_PER_TASK='1',
        # What srun.sh gives a task of one CPU, whatever this shell has.
        OMP_NUM_THREADS='1',
        GRES='none',
        PARTITION=PARTITION,
        CUDA_VISIBLE_DEVICES='')


@pytest.fixture
def slurm_environ(slurm_env, monkeypatch) -> Dict[str, str]:
    """``slurm_env`` set in this process's environment, for the tools run in
    it (``call_tool``) and the Slurm commands they start; as it was again
    after the test."""
    for key, value in slurm_env.items():
        monkeypatch.setenv(key, value)
    return slurm_env
