# Copyright (c) Res2Net-MMDet contributors. All rights reserved.
"""``--cfg-options`` through every tool that takes it: a value arrives as
the user typed it, spaces and any letters kept.

Each tool runs in this process until its first check names a value it
parsed (the missing data under the typed ``data_root``, or a backbone
setting it refuses): the parse, not a run, is the subject.
``zoo_slurm.py`` passes its options on to the jobs' commands; its parse is
that of :func:`~projects.res2net.zoo.runs.zoo_run`.
"""
import shlex
from pathlib import Path

import pytest

from projects.res2net.zoo.runs import steps, zoo_run
from projects.res2net.zoo.slurm import Resources, job_script

DEMO = 'configs/demo/faster_rcnn_r2_50_fpn_demo.py'
# A folder name with a space, accents and another script.
TYPED = 'my data é/демо'
STYLE = 'my style é'


def _typed_root(tmp_path: Path) -> str:
    return f'{tmp_path / TYPED}/'


@pytest.fixture
def files(tmp_path, tiny_demo_data):
    """A file that a tool requires as its checkpoint (none reads it: each
    stops before), and an image for cam.py."""
    checkpoint = tmp_path / 'unread.pth'
    checkpoint.write_bytes(b'')
    return dict(
        checkpoint=checkpoint,
        image=tiny_demo_data / 'val2017' / '000000000001.png')


# The tools that check their data first: the annotation file they miss is
# under the root as typed. (tool, its arguments before --cfg-options, the
# annotation file of the split it reads.)
READ_DATA = [
    ('train.py', lambda f, t: [DEMO, '--work-dir', t / 'wd'], 'train'),
    ('test.py', lambda f, t: [DEMO, f['checkpoint'], '--work-dir', t / 'wd'],
     'val'),
    ('misc/check_dataset.py', lambda f, t: [DEMO], 'train'),
    ('analysis_tools/benchmark.py', lambda f, t: [DEMO, '--device', 'cpu'],
     'val'),
    ('deployment/quantize.py', lambda f, t: [DEMO, f['checkpoint']], 'train'),
]
# The tools that build the model first: the backbone refuses the style as
# typed.
BUILD_MODEL = [
    ('analysis_tools/get_flops.py', lambda f, t: [DEMO, '--shape', 64]),
    ('analysis_tools/cam.py',
     lambda f, t: [DEMO, f['checkpoint'], f['image'], '--out', t / 'cam.png']),
    ('analysis_tools/benchmark_train.py',
     lambda f, t: [DEMO, '--device', 'cpu', '--no-memory', '--against']),
]


@pytest.mark.parametrize('tool, args, split', READ_DATA)
def test_a_typed_data_root_arrives_whole(call_tool, user_error, files,
                                         tmp_path, tool, args, split):
    root = _typed_root(tmp_path)
    result = call_tool(tool, *args(files, tmp_path), '--cfg-options',
                       f'data_root={root}')
    user_error(
        result, f"(data_root='{root}'): annotation file not found: "
        f'{root}annotations/instances_{split}2017.json')


@pytest.mark.parametrize('tool, args', BUILD_MODEL)
def test_a_typed_setting_arrives_whole(call_tool, user_error, files, tmp_path,
                                       tool, args):
    result = call_tool(tool, *args(files, tmp_path), '--cfg-options',
                       f'model.backbone.style={STYLE}')
    user_error(result, f"style='{STYLE}' is not supported")


def test_zoo_slurm_passes_the_typed_options_to_its_jobs(tmp_path):
    root = _typed_root(tmp_path)
    options = [
        f'data_root={root}',
        "train_dataloader.dataset.metainfo.classes=('sports ball', 'kite')"
    ]
    run, cfg = zoo_run(DEMO, str(tmp_path / 'zoo'), options)
    assert cfg.train_dataloader.dataset.data_root == root
    assert cfg.train_dataloader.dataset.metainfo.classes == ('sports ball',
                                                             'kite')
    # Each step's command line, as the job script writes it, gives the
    # tool the options as they were typed.
    script = job_script(
        name=run.name,
        steps=steps(run),
        resources=Resources(partition='cpu'),
        repo=str(tmp_path),
        log=str(tmp_path / 'log'),
        python='python')
    commands = [
        shlex.split(line) for line in script.splitlines()
        if '--cfg-options' in line
    ]
    assert len(commands) == 3  # train, test, benchmark
    for command in commands:
        assert command[command.index('--cfg-options') + 1:][:2] == options
