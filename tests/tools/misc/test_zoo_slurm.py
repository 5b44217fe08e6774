# Copyright (c) Res2Net-MMDet contributors. All rights reserved.
"""tools/misc/zoo_slurm.py: its one-line errors, and the workflow on a real
Slurm cluster (conftest.py starts it).

The cluster test's commands are docs/model_zoo.md's own ("Your own zoo
on a Slurm cluster"): two configs at the demo size are submitted and followed;
one job is cancelled part-way; gather shows it as "–"; the same submit
again skips the finished run and resumes the cut one; gather publishes
both.
"""
import hashlib
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Tuple

import pytest
import torch
import yaml

from projects.res2net.datasets.demo_data import generate_demo_dataset

TOOL = 'misc/zoo_slurm.py'
FASTER = 'faster_rcnn_r2_101_fpn_2x'
MASK = 'mask_rcnn_r2_101_fpn_2x'
DOC = 'docs/model_zoo.md'
SECTION = '## Your own zoo on a Slurm cluster'


def doc_commands(repo: Path) -> Tuple[Dict[str, str], List[List[str]]]:
    """The environment and the zoo_slurm.py commands of :data:`DOC`'s
    first code block in :data:`SECTION`."""
    text = (repo / DOC).read_text()
    block = text.split(SECTION, 1)[1].split('```bash\n', 1)[1]
    block = block.split('```', 1)[0].replace('\\\n', ' ')
    env, commands = {}, []
    for line in block.splitlines():
        words = shlex.split(line, comments=True)
        if words[:1] == ['export']:
            env.update(word.split('=', 1) for word in words[1:])
        elif words[:2] == ['python', f'tools/{TOOL}']:
            commands.append(words[2:])
    return env, commands


def _in(args: List[str], **paths: str) -> List[str]:
    """``args`` with the doc's paths replaced by the test's."""
    return [paths.get(arg, arg) for arg in args]


@pytest.mark.slurm
def test_submit_cut_resubmit_gather(repo, call_tool, slurm_environ, tmp_path,
                                    ram_dir, wait_until, table_rows,
                                    monkeypatch):
    """The first submit runs as a process, followed while a job of it is
    cancelled; the other commands in this process, with the doc's
    environment."""
    env, commands = doc_commands(repo)
    submit, status, gather = commands
    assert (submit[0], status[0], gather[0]) == ('submit', 'status', 'gather')
    assert '--wait' in submit
    data = tmp_path / 'data'
    generate_demo_dataset(str(data), num_train=4, num_val=2, seed=1)
    work = ram_dir / 'zoo'  # 2.9 GB of checkpoints
    paths = {
        'data/demo': str(data),
        submit[submit.index('--work-dir') + 1]: str(work)
    }
    # The doc's partition is the test cluster's; no GPUs on it.
    assert env['PARTITION'] == slurm_environ['PARTITION'] and \
        env['GRES'] == 'none'
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    env = dict(slurm_environ, **env)

    # Submitted and followed; the Mask R-CNN job is cancelled in its second
    # epoch, as an outage would end it.
    first = subprocess.Popen(
        [sys.executable, f'tools/{TOOL}', *_in(submit, **paths)],
        cwd=repo,
        env=dict(env, PYTHONUNBUFFERED='1'),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True)
    try:
        epoch_1 = work / MASK / 'epoch_1.pth'
        wait_until(
            epoch_1.exists, f'{epoch_1}', timeout=600, poll=0.1, process=first)
        cut = json.loads((work / MASK / 'zoo_job.json').read_text())
        subprocess.run(['scancel', cut['job_id']], env=env, check=True)
        out, err = first.communicate(timeout=600)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 2, out + err
    assert not (work / MASK / 'epoch_2.pth').exists(), 'cancelled too late'
    kept = json.loads((work / FASTER / 'zoo_job.json').read_text())
    for name, job in ((FASTER, kept), (MASK, cut)):
        assert f'{name}: submitted job {job["job_id"]} (train.py, test.py, ' \
            f'analysis_tools/benchmark.py); log {work / name}/slurm-' \
            f'{job["job_id"]}.log' in out
        assert re.search(
            rf'\] {name} +job +{job["job_id"]}  RUNNING .*'
            r'train\.py \(1/3\)', out), out
    assert re.search(rf'\] {FASTER} +job +{kept["job_id"]}  COMPLETED',
                     out), out
    # scancel sends SIGTERM: the iteration in progress ends with a
    # checkpoint, and a cancelled job is not requeued.
    stop = re.search(
        rf'{MASK}: job {cut["job_id"]} CANCELLED; the run is cut off in '
        r'training, after (iter_([34])\.pth); the last lines of', err)
    assert stop, err
    position = stop[1]
    assert 'not requeued: Slurm is ending the job (COMPLETING: cancelled' \
        in Path(cut['log']).read_text()
    assert err.strip().splitlines()[-1] == (
        f'error: 1 of 2 runs did not finish: {MASK} (job {cut["job_id"]} '
        'CANCELLED); their logs are above. Mend the cause and submit again: '
        'finished runs are skipped, cut-off ones resume')

    # Gathered now: the finished run is published, the cut one is "–".
    gathered = call_tool(TOOL, *_in(gather, **paths))
    assert gathered.returncode == 0, gathered.stderr[-3000:]
    assert f'{MASK}: every number –: job {cut["job_id"]} ended and the run ' \
        f'is cut off in training, after {position}' in gathered.stderr
    rows = table_rows(gathered.stdout, '| R2-101')
    assert len(rows) == 2
    assert rows[1][3:7] == ['–'] * 4 and rows[1][8] == '–'
    assert rows[1][7] == f'[{MASK}](configs/{MASK}.py)'
    meta = yaml.safe_load((work / 'metafile.yml').read_text())
    assert [m['Name'] for m in meta['Models']] == [f'{FASTER}_demo']

    # The same submit again: the finished run is skipped, the cut resumes.
    faster_files = {
        p.name: p.stat().st_mtime_ns
        for p in (work / FASTER).iterdir() if p.is_file()
    }
    second = call_tool(TOOL, *_in(submit, **paths))
    assert second.returncode == 0, second.stdout + second.stderr[-3000:]
    assert f'{FASTER}: finished (trained, tested, benchmarked) in ' \
        f'{work / FASTER}; skipped' in second.stdout
    resumed = json.loads((work / MASK / 'zoo_job.json').read_text())
    assert resumed['job_id'] != cut['job_id']
    assert f'{MASK}: submitted job {resumed["job_id"]} (train.py, test.py, ' \
        'analysis_tools/benchmark.py; training resumes from ' \
        f'{work / MASK}/{position})' in second.stdout
    assert f'finished: {MASK}; gather with' in second.stdout
    log = Path(resumed['log']).read_text()
    assert f'resumed epoch: 1, iter: {stop[2]}' in log, log[-3000:]
    assert json.loads((work / FASTER / 'zoo_job.json').read_text()) == kept
    assert {
        p.name: p.stat().st_mtime_ns
        for p in (work / FASTER).iterdir() if p.is_file()
    } == faster_files

    shown = call_tool(TOOL, *_in(status, **paths))
    assert shown.returncode == 0, shown.stderr[-3000:]
    for name, job in ((FASTER, kept), (MASK, resumed)):
        assert re.search(rf'^{name} +job +{job["job_id"]}  COMPLETED',
                         shown.stdout, re.M), shown.stdout

    # Gathered again: both published, the table and metafile point at them.
    gathered = call_tool(TOOL, *_in(gather, **paths))
    assert gathered.returncode == 0, gathered.stderr[-3000:]
    assert f'{MASK}: published' in gathered.stderr
    assert f'{FASTER}: published' not in gathered.stderr  # already was
    published = sorted((work / 'published').iterdir())
    assert len(published) == 2
    meta = yaml.safe_load((work / 'metafile.yml').read_text())
    models = {m['Name']: m for m in meta['Models']}
    rows = table_rows(gathered.stdout, '| R2-101')
    assert len(rows) == 2
    for name, cells in zip((FASTER, MASK), rows):
        path, = (p for p in published if p.name.startswith(f'{name}_demo-'))
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        assert path.name == f'{name}_demo-{digest[:8]}.pth'
        slim = torch.load(path, weights_only=True)
        full = torch.load(work / name / 'epoch_2.pth', weights_only=True)
        assert set(slim) == {'state_dict', 'meta'}
        for key, value in full['state_dict'].items():
            assert torch.equal(slim['state_dict'][key], value), key

        metrics = json.loads((work / name / 'metrics.json').read_text())
        box_ap = round(100 * metrics['metrics']['coco/bbox_mAP'], 1)
        assert cells[5] == f'{box_ap:.1f}', cells
        assert cells[7] == f'[{name}](configs/{name}.py)'
        assert cells[8].startswith(f'model: `{path}` \\| log: `{work / name}/')
        entry = models[f'{name}_demo']
        assert entry['Weights'] == str(path)
        assert entry['Results'][0]['Metrics'] == {'box AP': box_ap}
        assert entry['Metadata']['Epochs'] == 2
    assert 'mask AP' in str(models[f'{MASK}_demo']['Results'])


def test_bad_input_submits_nothing(call_tool, user_error, tmp_path,
                                   monkeypatch):
    work = tmp_path / 'zoo'
    monkeypatch.delenv('PARTITION', raising=False)
    user_error(
        call_tool(TOOL, 'submit', f'configs/{FASTER}.py', '--work-dir', work),
        'no partition: pass --partition NAME or set PARTITION')
    user_error(
        call_tool(TOOL, 'submit', f'configs/{FASTER}.py', 'configs/nope.py',
                  '--partition', 'gpu', '--work-dir', work),
        'config file not found: configs/nope.py')
    monkeypatch.setenv('GPUS', 'eight')
    user_error(
        call_tool(TOOL, 'submit', f'configs/{FASTER}.py', '--partition', 'gpu',
                  '--work-dir', work), 'GPUS=eight: not a positive '
        'number of tasks')
    monkeypatch.delenv('GPUS')
    user_error(
        call_tool(TOOL, 'submit', f'configs/{FASTER}.py',
                  f'configs/{FASTER}.py', '--partition', 'gpu', '--work-dir',
                  work), f'{FASTER} given twice')
    assert not work.exists()
    for command in ('status', 'gather'):
        user_error(
            call_tool(TOOL, command, '--work-dir', work),
            f'no jobs in {work}: submit them first')


@pytest.mark.slurm
def test_a_refused_job_leaves_nothing(call_tool, slurm_environ, user_error,
                                      tmp_path):
    work = tmp_path / 'zoo'
    refused = call_tool(TOOL, 'submit', f'configs/{FASTER}.py', '--partition',
                        'nope', '--work-dir', work)
    user_error(refused, 'sbatch refused', 'zoo_job.sh: sbatch: error: ',
               'Invalid partition name specified; check the partition')
    assert not work.exists()
