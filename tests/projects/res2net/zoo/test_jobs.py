# Copyright (c) Res2Net-MMDet contributors. All rights reserved.
"""projects/res2net/zoo/jobs.py: job records, submitting, following.

Slurm's commands are replaced here where a test needs them (``scontrol``
by a script that prints what it prints, so that its output is parsed as a
cluster's would be); the jobs themselves run in
tests/tools/misc/test_zoo_slurm.py, on a cluster.
"""
import json
import os

import pytest

from projects.res2net.errors import UserError
from projects.res2net.paths import REPO_ROOT, ZOO_JOB_JSON
from projects.res2net.zoo import jobs
from projects.res2net.zoo.demo import DemoSize
from projects.res2net.zoo.slurm import JobState

FASTER = 'faster_rcnn_r2_101_fpn_2x'
MASK = 'mask_rcnn_r2_101_fpn_2x'

# ``scontrol -o show job 7`` of a zoo job, as Slurm 22.05 prints it (one
# line); JobState, Reason, Restarts and RunTime are filled in.
SHOW_JOB = (
    'JobId=7 JobName=zoo_job.sh UserId=me(1000) GroupId=me(1000) '
    'MCS_label=N/A Priority=4294901759 Nice=0 Account=(null) QOS=(null) '
    'JobState={state} Reason={reason} Dependency=(null) Requeue=1 '
    'Restarts={restarts} BatchFlag=1 Reboot=0 ExitCode=0:0 '
    'RunTime={elapsed} TimeLimit=UNLIMITED TimeMin=N/A '
    'SubmitTime=2024-05-02T10:00:00 EligibleTime=2024-05-02T10:02:01 '
    'AccrueTime=Unknown StartTime=2024-05-02T10:02:01 EndTime=Unknown '
    'Deadline=N/A SuspendTime=None SecsPreSuspend=0 '
    'LastSchedEval=2024-05-02T10:00:10 Scheduler=Main Partition=cpu '
    'AllocNode:Sid=login:4242 ReqNodeList=(null) ExcNodeList=(null) '
    'NodeList=node1 BatchHost=node1 NumNodes=1 NumCPUs=2 NumTasks=2 '
    'CPUs/Task=1 ReqB:S:C:T=0:0:*:* TRES=cpu=2,node=1,billing=2 '
    'Socks/Node=* NtasksPerN:B:S:C=0:0:*:* CoreSpec=* MinCPUsNode=1 '
    'MinMemoryNode=0 MinTmpDiskNode=0 Features=(null) DelayBoot=00:00:00 '
    'OverSubscribe=OK Contiguous=0 Licenses=(null) Network=(null) '
    'Command=/zoo/{name}/zoo_job.sh WorkDir=/zoo '
    'StdErr=/zoo/{name}/slurm-7.log StdIn=/dev/null '
    'StdOut=/zoo/{name}/slurm-7.log Power=')
# What scontrol says of a job it does not know (any more), with exit 1.
UNKNOWN_JOB = 'slurm_load_jobs error: Invalid job id specified'


@pytest.fixture
def scontrol(tmp_path, monkeypatch):
    """A fake ``scontrol`` first on PATH: ``scontrol -o show job ID`` prints
    what ``show(ID, state=..., ...)`` last set for the job, in Slurm's
    format, or fails as scontrol does for a job it does not know."""
    folder = tmp_path / 'fake_slurm'
    folder.mkdir()
    script = folder / 'scontrol'
    script.write_text(
        '#!/bin/sh\n'
        'job="$(dirname "$0")/job-$4"\n'
        'if [ "$1 $2 $3" = "-o show job" ] && [ -f "$job" ]; then\n'
        '    exec cat "$job"\n'
        'fi\n'
        f'echo "{UNKNOWN_JOB}" >&2\n'
        'exit 1\n')
    script.chmod(0o755)
    monkeypatch.setenv('PATH', f'{folder}{os.pathsep}{os.environ["PATH"]}')

    def show(job_id: str,
             *,
             state: str,
             elapsed: str,
             reason: str = 'None',
             restarts: int = 0) -> None:
        (folder / f'job-{job_id}').write_text(
            SHOW_JOB.format(
                state=state,
                reason=reason,
                restarts=restarts,
                elapsed=elapsed,
                name=FASTER) + '\n')

    return show


def _job(root, name=FASTER, job_id='7'):
    return dict(
        config=f'configs/{name}.py',
        work_dir=f'{root}/{name}',
        checkpoint=f'{root}/{name}/epoch_24.pth',
        options=[],
        benchmark_args=[],
        job_id=job_id,
        log=f'{root}/{name}/slurm-{job_id}.log')


def test_ctrl_c_stops_following_not_the_jobs(monkeypatch, capsys):

    def interrupted(job):
        raise KeyboardInterrupt

    monkeypatch.setattr(jobs, 'look', interrupted)
    with pytest.raises(SystemExit) as stop:
        jobs.follow([_job('/zoo')], poll=0)
    assert stop.value.code == 130
    assert capsys.readouterr().err.strip() == (
        'stopped following; the jobs go on. Follow them again with: python '
        'tools/misc/zoo_slurm.py status --work-dir /zoo --wait')


def test_a_record_is_written_whole_and_read_back(tmp_path):
    job = _job(tmp_path)
    assert jobs.read_job(job['work_dir']) is None
    jobs.write_job(job)
    path = tmp_path / FASTER / ZOO_JOB_JSON
    text = path.read_text()
    assert text == json.dumps(job, indent=2, sort_keys=True) + '\n'
    assert jobs.read_job(job['work_dir']) == job
    assert [p.name for p in path.parent.iterdir()] == [ZOO_JOB_JSON]


@pytest.mark.parametrize('text, why', [
    ('{"config": ', 'Expecting value: line 1 column 12 (char 11)'),
    ('{"config": "c.py", "job_id": "7"}',
     'no benchmark_args, checkpoint, log, options, work_dir'),
    ('7', "'int' object is not iterable"),
])
def test_a_damaged_record_names_itself(tmp_path, text, why):
    (tmp_path / ZOO_JOB_JSON).write_text(text)
    with pytest.raises(UserError) as err:
        jobs.read_job(str(tmp_path))
    assert str(err.value) == (
        f'{tmp_path / ZOO_JOB_JSON} is not a record of zoo_slurm.py submit '
        f'({why}); delete it and submit again')


def test_jobs_come_in_the_order_of_the_zoo_table(tmp_path):
    with pytest.raises(UserError) as err:
        jobs.jobs_in(str(tmp_path))
    assert str(
        err.value) == (f'no jobs in {tmp_path}: submit them first with python '
                       'tools/misc/zoo_slurm.py submit CONFIG... --work-dir '
                       f'{tmp_path}')
    for name in ('b_mine', MASK, 'a_mine', FASTER):
        jobs.write_job(_job(tmp_path, name))
    (tmp_path / 'no_job').mkdir()
    assert [jobs.run_of(job).name for job in jobs.jobs_in(str(tmp_path))
            ] == [FASTER, MASK, 'a_mine', 'b_mine']


def test_a_job_slurm_forgot_is_told_by_its_work_dir(tmp_path, scontrol,
                                                    capsys):
    job = _job(tmp_path)  # scontrol does not know job 7
    assert jobs.look(job) == ('GONE', '', '')
    with pytest.raises(UserError) as err:
        jobs.report([job])
    assert str(err.value) == (
        f'1 of 1 runs did not finish: {FASTER} (job 7 ended (Slurm no '
        'longer knows it)); their logs are above. Mend the cause and submit '
        'again: finished runs are skipped, cut-off ones resume')
    assert capsys.readouterr().err == (
        f'{FASTER}: job 7 ended (Slurm no longer knows it); the run is not '
        f'started; the last lines of {job["log"]}:\n'
        f'(no log at {job["log"]}: the job did not start)\n')


def test_a_running_job_shows_its_step(tmp_path, scontrol):
    job = _job(tmp_path)
    (tmp_path / FASTER).mkdir()
    (tmp_path / FASTER /
     'slurm-7.log').write_text('==> [2/3] test.py Mon\nloading\n')
    scontrol('7', state='RUNNING', elapsed='00:01:02')
    assert jobs.look(job) == ('RUNNING', '00:01:02', 'test.py (2/3)')
    scontrol('7', state='PENDING', elapsed='00:00:00', reason='Priority')
    assert jobs.look(job) == ('PENDING', '00:00:00', '(Priority)')
    assert jobs.active(job) == JobState('PENDING', '00:00:00', 'Priority')
    scontrol('7', state='FAILED', elapsed='00:00:05', reason='NonZeroExitCode')
    assert jobs.active(job) is None


def test_a_requeued_job_shows_how_often(tmp_path, scontrol):
    """Slurm's ``Restarts=`` count, read from scontrol's line."""
    job = _job(tmp_path)
    (tmp_path / FASTER).mkdir()
    (tmp_path / FASTER / 'slurm-7.log').write_text('==> [1/3] train.py Mon\n')
    scontrol(
        '7',
        state='PENDING',
        elapsed='00:00:00',
        reason='BeginTime',
        restarts=1)
    assert jobs.look(job) == ('PENDING', '00:00:00',
                              '(BeginTime)  requeued 1 time')
    scontrol('7', state='RUNNING', elapsed='1-02:03:09', restarts=12)
    assert jobs.look(job) == ('RUNNING', '1-02:03:09',
                              'train.py (1/3)  requeued 12 times')


def test_submit_writes_the_script_and_the_record(tmp_path, monkeypatch,
                                                 capsys):
    sent = []
    monkeypatch.setattr(jobs, 'submit',
                        lambda script: sent.append(script) or '42')
    monkeypatch.setattr(jobs, 'job_state', lambda job_id: None)
    work = tmp_path / 'zoo'
    data = tmp_path / 'data'
    data.mkdir()  # not generated: it exists
    followed = jobs.submit_jobs([f'configs/{FASTER}.py'],
                                partition='cpu',
                                work_dir=str(work),
                                cfg_options=['randomness.seed=1'],
                                warmup=1,
                                demo_data=str(data),
                                demo_size=DemoSize(epochs=2, test_images=3))
    script = work / FASTER / 'zoo_job.sh'
    assert sent == [str(script)]
    job, = followed
    assert job == jobs.read_job(str(work / FASTER))
    options = DemoSize(
        epochs=2, test_images=3).options(
            str(data), f'configs/{FASTER}.py') + ['randomness.seed=1']
    assert job['options'] == options
    assert job['benchmark_args'] == ['--num-images', '3', '--warmup', '1']
    assert job['checkpoint'] == f'{work / FASTER}/epoch_2.pth'
    assert job['steps'] == [
        'train.py', 'test.py', 'analysis_tools/benchmark.py'
    ]
    assert set(job) == {
        'config', 'work_dir', 'checkpoint', 'options', 'benchmark_args',
        'job_id', 'log', 'script', 'steps', 'submitted'
    }
    text = script.read_text()
    assert f'cd {REPO_ROOT}\n' in text
    assert f'#SBATCH --output={work / FASTER}/slurm-%j.log' in text
    assert capsys.readouterr().out == (
        f'{FASTER}: submitted job 42 (train.py, test.py, '
        'analysis_tools/benchmark.py); log '
        f'{work / FASTER}/slurm-42.log\n')


def test_a_refused_job_leaves_nothing(tmp_path, monkeypatch):

    def refused(script):
        assert (tmp_path / 'zoo' / FASTER / 'zoo_job.sh').is_file()
        raise UserError('sbatch refused')

    monkeypatch.setattr(jobs, 'submit', refused)
    with pytest.raises(UserError, match='sbatch refused'):
        jobs.submit_jobs([f'configs/{FASTER}.py'],
                         partition='cpu',
                         work_dir=str(tmp_path / 'zoo'))
    assert list(tmp_path.iterdir()) == []
