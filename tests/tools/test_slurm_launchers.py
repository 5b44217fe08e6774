# Copyright (c) Res2Net-MMDet contributors. All rights reserved.
"""tools/slurm_train.sh and tools/slurm_test.sh on a real Slurm cluster.

On the one-node cluster that the ``slurm`` fixture starts (conftest.py);
without root and Debian's packages the tests skip and say why. The jobs are
CPU processes (``GRES=none``) over gloo.
"""
import json
import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest
import torch

from projects.res2net.engine.preemption import scontrol_job
from projects.res2net.engine.worklock import LOCK_NAME, WorkDirLock
from projects.res2net.engine.worklock import read_record as read_lock_record

DEMO = 'configs/demo/faster_rcnn_r2_50_fpn_demo.py'

pytestmark = pytest.mark.slurm


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
        slurm_env['PARTITION'],
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
        slurm_env['PARTITION'],
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
        'tools/slurm_train.sh', slurm_env['PARTITION'], 'r2-dead-rank', DEMO,
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


def _scontrol(*args, env) -> None:
    subprocess.run(['scontrol', *args], env=env, check=True)


def _text(path: Path) -> str:
    return path.read_text() if path.exists() else ''


def test_a_time_limited_job_checkpoints_requeues_and_ends_exact(
        run_script, repo, slurm_env, tiny_demo_data, quick, wait_until,
        monkeypatch, tmp_path):
    """A requeueable batch job runs tools/slurm_train.sh, as users wrap it.

    Its time limit is shortened once it trains, so that Slurm's warning
    (SIGUSR1, 120 s before the limit) comes while it trains: the iteration
    ends, a checkpoint of that position is saved, and the job requeues
    itself. The requeued job (the test lifts the limit again)
    resumes; then a SIGTERM, as a preemption sends,
    stops it too, and as it may be requeued once only (max_requeues=1) it
    ends, saying so. Its last checkpoint holds the weights that a plain
    --resume from the first stop's checkpoint reaches, trained as far: those
    of a run never stopped (test_train_test.py shows a resume's to be).

    One task a job, niced: the time it must train (Slurm's signal comes up
    to 30 s after the change) costs at most one core, and only what the
    other tests leave of it. That every rank of a job stops at the same
    iteration is tested with two ranks in test_dist_launchers.py.
    """
    slurm_env = dict(slurm_env, GPUS='1', GPUS_PER_NODE='1')
    iters = 400
    options = quick(
        tiny_demo_data,
        **{
            # Slurm checks time limits every 30 s, so its signal comes
            # within that after the change: at least a minute of training
            # (a step takes 0.17-0.3 s on a fast machine). The job is
            # stopped long before the end.
            'train_cfg.max_iters': iters,
            'train_dataloader.batch_size': 1,
            'train_dataloader.num_workers': 1,  # replayed exactly
            'default_hooks.logger.interval': 1,
            'default_hooks.checkpoint.interval': iters,
            'custom_hooks.2.max_requeues': 1,
        })
    work_dir = tmp_path / 'requeued'
    log = tmp_path / 'job.log'
    script = tmp_path / 'job.sh'
    train = ' '.join(
        shlex.quote(str(word)) for word in [
            'tools/slurm_train.sh', slurm_env['PARTITION'], 'r2-requeue', DEMO,
            work_dir, *options
        ])
    script.write_text('\n'.join([
        '#!/usr/bin/env bash',
        '#SBATCH --requeue',
        '#SBATCH --time=5',
        '#SBATCH --signal=USR1@120',
        '#SBATCH --ntasks=1',
        '#SBATCH --cpus-per-task=1',
        f'#SBATCH --output={log}',
        '#SBATCH --open-mode=append',
        'set -euo pipefail',
        f'cd {shlex.quote(str(repo))}',
        # Niced: it trains while the test waits on Slurm's 30-s checks,
        # taking what CPU the other tests leave (PropagatePrioProcess).
        f'nice -n 10 {train}',
        '',
    ]))
    job_id = subprocess.run(['sbatch', '--parsable',
                             str(script)],
                            env=slurm_env,
                            capture_output=True,
                            text=True,
                            check=True).stdout.strip()
    monkeypatch.setenv('SLURM_CONF', slurm_env['SLURM_CONF'])  # scontrol's

    def job() -> dict:
        return scontrol_job(job_id) or {}

    def stopped(line: str, what: str, timeout: float) -> int:
        """Wait for the log's stop line (``line``, a pattern whose groups
        are the iteration and the checkpoint); the iteration, after checking
        that the checkpoint is its own."""
        found = wait_until(
            lambda: re.search(line, _text(log)), what, timeout=timeout)
        assert found[2] == str(work_dir / f'iter_{found[1]}.pth')
        return int(found[1])

    lock_file = work_dir / LOCK_NAME
    held_before = None
    try:
        wait_until(
            lambda: 'Iter(train)' in _text(log), 'training', timeout=300)
        # The job's run holds its work dir, named by job and restart count.
        first = read_lock_record(lock_file)
        assert first['slurm_job_id'] == job_id, first
        assert first['slurm_restart_count'] == 0
        # 1-2 minutes left, less than the signal's lead: Slurm sends it at
        # its next check of the time limits.
        run_time = job()['RunTime']
        minutes = int(run_time.split(':')[-2]) + 2
        _scontrol(
            'update', f'JobId={job_id}', f'TimeLimit={minutes}', env=slurm_env)
        stopped_at = stopped(
            r"training stopped by SIGUSR1 \(Slurm's warning before the time "
            r'limit\) after iteration (\d+): saved (\S+); requeuing Slurm '
            rf'job {job_id} \(requeue 1 of at most 1\): it resumes from \2',
            'the requeue',
            timeout=120)
        assert 0 < stopped_at < iters
        wait_until(
            lambda: job().get('Restarts') == '1' and job().get('JobState') ==
            'PENDING',
            'the job to wait in the queue',
            timeout=300)
        # The old run let go of the lock at its stop. Take it as that run
        # would still hold it, had its node gone with it (NFSv3 keeps a lost
        # client's locks): the requeued job takes it over.
        assert not lock_file.exists()
        held_before = WorkDirLock(
            work_dir,
            environ={
                'SLURM_JOB_ID': job_id,
                'SLURM_RESTART_COUNT': '0'
            })
        held_before.acquire()
        # Its full limit back (the test's cluster holds a requeued job for
        # 11 s instead of Slurm's default 121 s: slurm.conf's cred_expire).
        _scontrol('update', f'JobId={job_id}', 'TimeLimit=10', env=slurm_env)

        wait_until(
            lambda: f'resumed epoch: 0, iter: {stopped_at}' in _text(log) and
            re.search(
                rf'Iter\(train\) \[ *\d+/{iters}\]',
                _text(log).split(f'resumed epoch: 0, iter: {stopped_at}')[1]),
            'the resumed training',
            timeout=300)
        assert f'{lock_file}: taken over from this Slurm job\'s earlier run ' \
            f'on host {held_before.record["host"]} (pid {os.getpid()}, ' \
            f'started {held_before.record["started"]}, Slurm job {job_id}), ' \
            'which the requeue ends' in _text(log)
        requeued = read_lock_record(lock_file)
        assert (requeued['slurm_job_id'], requeued['slurm_restart_count']) \
            == (job_id, 1)
        held_before.release()  # the old run's end leaves the new lock
        assert read_lock_record(lock_file) == requeued
        subprocess.run(['scancel', '--signal=TERM', job_id],
                       env=slurm_env,
                       check=True)
        again_at = stopped(
            r'training stopped by SIGTERM \(preemption, the time limit or a '
            r'kill\) after iteration (\d+): saved (\S+); not requeued: it '
            r'was requeued 1 time already, the most '
            r'SignalCheckpointHook\(max_requeues=1\) allows',
            'the second stop',
            timeout=300)
        wait_until(
            lambda: job().get('JobState') == 'FAILED',
            'the job to end',
            timeout=300)
    finally:
        subprocess.run(['scancel', job_id], env=slurm_env)
        if held_before is not None:
            held_before.release()
    assert not lock_file.exists()  # the requeued run's stop removed it
    assert f'Slurm job {job_id} was requeued (1 of at most 1): going on ' \
        f'from iteration {stopped_at}' in _text(log)
    assert stopped_at < again_at < iters

    # The same weights as a plain --resume from the checkpoint of the first
    # stop, trained as far (one task, as the job): the requeued job went on
    # exactly as a resume does, and a resume ends as a run never stopped
    # (tests/tools/test_train_test.py). The learning-rate schedule is fixed
    # by the config, whatever max_iters.
    reference = run_script(
        'slurm_train.sh',
        slurm_env['PARTITION'],
        'r2-reference',
        DEMO,
        tmp_path / 'reference',
        '--resume',
        work_dir / f'iter_{stopped_at}.pth',
        *options,
        f'train_cfg.max_iters={again_at}',
        f'default_hooks.checkpoint.interval={again_at}',
        env=slurm_env)
    assert reference.returncode == 0, \
        (reference.stdout + reference.stderr)[-3000:]
    assert f'resumed epoch: 0, iter: {stopped_at}' in reference.stdout + \
        reference.stderr
    expected = torch.load(
        tmp_path / 'reference' / f'iter_{again_at}.pth',
        weights_only=True)['state_dict']
    weights = torch.load(
        work_dir / f'iter_{again_at}.pth', weights_only=True)['state_dict']
    assert weights.keys() == expected.keys()
    for key, value in expected.items():
        assert torch.equal(weights[key], value), key
