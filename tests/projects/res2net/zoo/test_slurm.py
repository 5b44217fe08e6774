# Copyright (c) Res2Net-MMDet contributors. All rights reserved.
"""projects/res2net/zoo/slurm.py: job sizes, job scripts, job logs.

The jobs themselves run in tests/tools/misc/test_zoo_slurm.py, on a cluster.
"""
import re
import subprocess

import pytest

from projects.res2net.errors import UserError
from projects.res2net.zoo.runs import steps, zoo_run
from projects.res2net.zoo.slurm import (Resources, current_step, job_script,
                                        log_tail, submit)


def test_the_defaults_are_the_launchers(repo):
    launcher = (repo / 'tools/launch/srun.sh').read_text()
    defaults = dict(re.findall(r'^(\w+)=\$\{\1:-(\d+)\}$', launcher, re.M))
    resources = Resources.from_environ('gpu', {})
    assert defaults == {
        'GPUS': str(resources.gpus),
        'GPUS_PER_NODE': str(resources.gpus_per_node),
        'CPUS_PER_TASK': str(resources.cpus_per_task)
    }
    assert resources.gres_request == 'gpu:8'


def test_sizes_from_the_environment():
    two_nodes = Resources.from_environ(
        'gpu', dict(GPUS='16', GPUS_PER_NODE='8', CPUS_PER_TASK='4'))
    assert (two_nodes.nodes, two_nodes.tasks_per_node) == (2, 8)
    one = Resources.from_environ('gpu', dict(GPUS='1'))
    assert (one.nodes, one.tasks_per_node, one.gres_request) == (1, 1, 'gpu:1')
    cpu = Resources.from_environ('cpu', dict(GRES='none'))
    assert cpu.gres_request is None and cpu.environment()['GRES'] == 'none'


def test_the_stop_signal_s_lead_time(repo):
    launcher = (repo / 'tools/slurm_train.sh').read_text()
    default, = re.findall(r'^LEAD=\$\{STOP_SIGNAL_LEAD:-(\d+)\}$', launcher,
                          re.M)
    assert Resources.from_environ('gpu', {}).signal_lead == int(default)
    quick = Resources.from_environ('gpu', dict(STOP_SIGNAL_LEAD='300'))
    assert quick.signal_lead == 300
    none = Resources.from_environ('gpu', dict(STOP_SIGNAL_LEAD='0'))
    script = job_script(
        name='x', steps=[], resources=none, repo='/r', log='l', python='p')
    assert '#SBATCH --requeue' in script and '--signal' not in script


@pytest.mark.parametrize('environ, message', [
    (dict(STOP_SIGNAL_LEAD='2m'), 'STOP_SIGNAL_LEAD=2m: not a number of '
     'seconds'),
    (dict(GPUS='eight'), 'GPUS=eight: not a positive number of tasks'),
    (dict(CPUS_PER_TASK='0'), 'CPUS_PER_TASK=0: not a positive number of '
     'CPUs'),
    (dict(GPUS='12', GPUS_PER_NODE='8'), 'GPUS=12 is not a multiple of '
     'GPUS_PER_NODE=8'),
])
def test_bad_sizes_are_one_line(environ, message):
    with pytest.raises(UserError, match=re.escape(message)):
        Resources.from_environ('gpu', environ)


def test_the_job_script(tmp_path):
    run, _ = zoo_run('configs/faster_rcnn_r2_101_fpn_2x.py',
                     str(tmp_path / 'zoo'), ["data_root='my data/'"])
    resources = Resources.from_environ(
        'gpu', dict(GPUS='16', SRUN_ARGS='--qos=high --time=10'))
    script = job_script(
        name=run.name,
        steps=steps(run)[1:],
        resources=resources,
        repo='/repo',
        log=f'{run.work_dir}/slurm-%j.log',
        python='/venv/bin/python')
    lines = script.splitlines()
    assert lines[:12] == [
        '#!/usr/bin/env bash',
        '#SBATCH --job-name=faster_rcnn_r2_101_fpn_2x',
        '#SBATCH --partition=gpu',
        '#SBATCH --nodes=2',
        '#SBATCH --ntasks=16',
        '#SBATCH --ntasks-per-node=8',
        '#SBATCH --cpus-per-task=5',
        '#SBATCH --gres=gpu:8',
        f'#SBATCH --output={run.work_dir}/slurm-%j.log',
        # Requeued after a checkpoint at its time limit, it logs on.
        '#SBATCH --open-mode=append',
        '#SBATCH --requeue',
        '#SBATCH --signal=USR1@120',
    ]
    assert "export SRUN_ARGS='--qos=high --time=10'" in lines
    assert 'export PYTHON=/venv/bin/python' in lines
    # Jobs that share a node do not share a rendezvous port.
    assert 'export MASTER_PORT=$((20000 + SLURM_JOB_ID % 40000))' in lines
    # Two steps left: test.py on all tasks, then the benchmark in one.
    assert [line for line in lines if line.startswith('echo')] == [
        'echo "==> [1/2] test.py $(date)"',
        'echo "==> [2/2] analysis_tools/benchmark.py $(date)"',
        'echo "==> finished $(date)"',
    ]
    assert (f'tools/launch/srun.sh gpu faster_rcnn_r2_101_fpn_2x test.py '
            f'configs/faster_rcnn_r2_101_fpn_2x.py {run.checkpoint} '
            f"--work-dir {run.work_dir} --cfg-options 'data_root='\"'\"'my "
            "data/'\"'\"''") in lines
    bench = 'OMP_NUM_THREADS=$CPUS_PER_TASK "$PYTHON" ' \
        'tools/analysis_tools/benchmark.py '
    assert any(line.startswith(bench) for line in lines)
    path = tmp_path / 'job.sh'
    path.write_text(script)
    assert subprocess.run(['bash', '-n', str(path)]).returncode == 0


def test_the_step_and_the_tail_of_a_log(tmp_path):
    log = tmp_path / 'slurm-7.log'
    assert current_step(str(log)) is None
    assert log_tail(str(log)) == f'(no log at {log}: the job did not start)'
    log.write_text('==> [1/3] train.py Mon\nIter 1\n==> [2/3] test.py Mon\n' +
                   ''.join(f'line {i}\n' for i in range(30)))
    assert current_step(str(log)) == 'test.py (2/3)'
    assert log_tail(str(log), 2) == 'line 28\nline 29'


def test_no_sbatch_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv('PATH', str(tmp_path))
    with pytest.raises(
            UserError,
            match='sbatch not found: run this where '
            "Slurm's commands are on PATH"):
        submit(str(tmp_path / 'job.sh'))
