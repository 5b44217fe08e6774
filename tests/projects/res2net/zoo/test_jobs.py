# Copyright (c) Res2Net-MMDet contributors. All rights reserved.
"""projects/res2net/zoo/jobs.py: job records, submitting, following.

Slurm's commands are replaced here where a test needs them; the jobs
themselves run in tests/tools/misc/test_zoo_slurm.py, on a cluster.
"""
import json

import pytest

from projects.res2net.errors import UserError
from projects.res2net.paths import REPO_ROOT, ZOO_JOB_JSON
from projects.res2net.zoo import jobs
from projects.res2net.zoo.demo import DemoSize
from projects.res2net.zoo.slurm import JobState

FASTER = 'faster_rcnn_r2_101_fpn_2x'
MASK = 'mask_rcnn_r2_101_fpn_2x'


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


def test_a_job_slurm_forgot_is_told_by_its_work_dir(tmp_path, monkeypatch,
                                                    capsys):
    monkeypatch.setattr(jobs, 'job_state', lambda job_id: None)
    job = _job(tmp_path)
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


def test_a_running_job_shows_its_step(tmp_path, monkeypatch):
    job = _job(tmp_path)
    (tmp_path / FASTER).mkdir()
    (tmp_path / FASTER /
     'slurm-7.log').write_text('==> [2/3] test.py Mon\nloading\n')
    states = {'7': JobState('RUNNING', '0:01:02')}
    monkeypatch.setattr(jobs, 'job_state', states.get)
    assert jobs.look(job) == ('RUNNING', '0:01:02', 'test.py (2/3)')
    states['7'] = JobState('PENDING', '0:00:00', 'Priority')
    assert jobs.look(job) == ('PENDING', '0:00:00', '(Priority)')
    assert jobs.active(job) == states['7']
    states['7'] = JobState('FAILED', '0:00:05')
    assert jobs.active(job) is None


def test_a_requeued_job_shows_how_often(tmp_path, monkeypatch):
    job = _job(tmp_path)
    (tmp_path / FASTER).mkdir()
    (tmp_path / FASTER / 'slurm-7.log').write_text('==> [1/3] train.py Mon\n')
    states = {'7': JobState('PENDING', '0:00:00', 'BeginTime', restarts=1)}
    monkeypatch.setattr(jobs, 'job_state', states.get)
    assert jobs.look(job) == ('PENDING', '0:00:00',
                              '(BeginTime)  requeued 1 time')
    states['7'] = JobState('RUNNING', '0:00:09', restarts=2)
    assert jobs.look(job) == ('RUNNING', '0:00:09',
                              'train.py (1/3)  requeued 2 times')


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
