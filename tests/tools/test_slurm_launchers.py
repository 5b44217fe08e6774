# Copyright (c) Res2Net-MMDet contributors. All rights reserved.
"""tools/slurm_train.sh and tools/slurm_test.sh on a real Slurm cluster.

The cluster is started here: Debian's slurm-wlm and munge, a one-node
slurm.conf written for this machine, then munged, slurmctld and slurmd, in
that order. It needs root and Debian's packages; elsewhere the tests skip and
say why. The jobs are CPU processes (``GRES=none``) over gloo.
"""
import json
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Dict, Iterator, Optional

import pytest
import torch

DEMO = 'configs/demo/faster_rcnn_r2_50_fpn_demo.py'
PARTITION = 'cpu'
MUNGE_RUN_DIR = Path('/run/munge')
MUNGE_KEY = Path('/etc/munge/munge.key')
DAEMONS = ('srun', 'slurmctld', 'slurmd', 'munged', 'munge')

pytestmark = pytest.mark.slurm


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
    _wait(path.exists, f'{path} to be written')
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
    _wait(_munge_works, 'munged to answer')
    return _pid(MUNGE_RUN_DIR / 'munged.pid')


def _wait(ready, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            raise TimeoutError(f'waited {timeout} s for {what}')
        time.sleep(0.5)


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
        'CredType=cred/munge',
        'SlurmUser=root',
        f'SlurmctldPort={_port()}',
        f'SlurmdPort={_port()}',
        # No cgroups in a container: plain process tracking, no binding.
        'ProctrackType=proctrack/linuxproc',
        'TaskPlugin=task/none',
        'MpiDefault=none',
        'ReturnToService=2',
        'SchedulerType=sched/builtin',
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


@pytest.fixture(scope='module')
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
        _wait(
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
            _wait(lambda: not _alive(pid), f'process {pid} to end')


@pytest.fixture
def slurm_env(slurm, launcher_env) -> Dict[str, str]:
    """mmdet's Slurm variables for 2 CPU tasks on this one node.

    The test cluster declares no GPUs (no GRES), so the tasks are CPU
    processes over gloo on any machine.
    """
    return dict(
        launcher_env,
        SLURM_CONF=slurm['SLURM_CONF'],
        GPUS='2',
        GPUS_PER_NODE='2',
        CPUS_PER_TASK='1',
        GRES='none',
        CUDA_VISIBLE_DEVICES='')


def test_slurm_train_then_slurm_test(run_script, run_tool, slurm_env,
                                     tiny_demo_data, quick, tmp_path):
    work_dir = tmp_path / 'train'
    options = quick(
        tiny_demo_data, **{
            'train_cfg.max_iters': 4,
            'default_hooks.logger.interval': 1,
            'train_dataloader.batch_size': 1,
            'default_hooks.checkpoint.interval': 4,
            'model.test_cfg.rcnn.score_thr': 0.0,
        })
    train = run_script(
        'slurm_train.sh',
        PARTITION,
        'r2-train',
        DEMO,
        work_dir,
        *options,
        env=slurm_env)
    log = train.stdout + train.stderr
    assert train.returncode == 0, log[-3000:]
    assert 'Distributed launcher: slurm' in log
    assert "'backend': 'gloo'" in log
    assert 'Iter(train) [4/4]' in log
    checkpoint = work_dir / 'iter_4.pth'
    assert (work_dir / 'last_checkpoint').read_text().strip() == \
        str(checkpoint)
    saved = torch.load(checkpoint, weights_only=True)
    assert saved['meta']['iter'] == 4

    test = run_script(
        'slurm_test.sh',
        PARTITION,
        'r2-test',
        DEMO,
        checkpoint,
        '--work-dir',
        tmp_path / 'test',
        *options,
        env=slurm_env)
    assert test.returncode == 0, (test.stdout + test.stderr)[-3000:]
    report = json.loads((tmp_path / 'test' / 'metrics.json').read_text())
    assert report['checkpoint'] == str(checkpoint)
    assert report['config'] == DEMO

    # The same AP as one process on the same checkpoint.
    single = run_tool(
        'test.py',
        DEMO,
        checkpoint,
        '--work-dir',
        tmp_path / 'single',
        *options,
        env={
            'OMP_NUM_THREADS': '1',
            'CUDA_VISIBLE_DEVICES': ''
        })
    assert single.returncode == 0, single.stderr[-3000:]
    expected = json.loads((tmp_path / 'single' / 'metrics.json').read_text())
    assert 'coco/bbox_mAP' in report['metrics']
    assert report['metrics'] == expected['metrics']


def test_a_dead_task_ends_the_slurm_job(kill_rank_mid_training, slurm_env,
                                        tiny_demo_data, quick, tmp_path):
    """--kill-on-bad-exit=1: SIGKILL one task and srun ends the rest."""
    ended = kill_rank_mid_training([
        'tools/slurm_train.sh', PARTITION, 'r2-dead-rank', DEMO,
        tmp_path / 'wd', *quick(
            tiny_demo_data, **{
                'train_cfg.max_iters': 10000,
                'train_dataloader.batch_size': 1,
                'default_hooks.logger.interval': 1
            })
    ],
                                   env=slurm_env,
                                   rank_variable='SLURM_PROCID')
    assert ended['returncode'] not in (0, None), ended['log'][-3000:]
    assert ended['seconds'] < 60
