# Copyright (c) Res2Net-MMDet contributors. All rights reserved.
"""tools/misc/generate_demo_data.py: its summary, reruns and one-line errors.

What it generates is tested on the module
(tests/projects/res2net/datasets/test_demo_data.py).
"""
import os

from projects.res2net.datasets.demo_data import DEMO_SHAPES

TOOL = 'misc/generate_demo_data.py'


def test_summary_rerun_and_errors(call_tool, tmp_path):
    out = tmp_path / 'demo'
    args = ['--out', out, '--num-train', 12, '--num-val', 6, '--seed', 1]
    made = call_tool(TOOL, *args)
    assert made.returncode == 0, made.stderr
    lines = made.stdout.strip().splitlines()
    assert lines[0] == f'{out}: generated'
    assert lines[1].startswith('  train: 12 images, ')
    assert lines[2].startswith('  val: 6 images, ')
    for name in DEMO_SHAPES:
        assert f'{name}=' in lines[1] and f'{name}=' in lines[2]
    assert len(os.listdir(out / 'train2017')) == 12

    again = call_tool(TOOL, *args)
    assert again.returncode == 0, again.stderr
    assert again.stdout.splitlines()[0] == f'{out}: up to date'
    assert len(again.stdout.splitlines()) == 3

    other = call_tool(TOOL, '--out', out, '--num-train', 13)
    assert other.returncode == 2
    assert other.stdout == ''
    assert len(other.stderr.strip().splitlines()) == 1
    assert other.stderr.startswith('error: ') and '--force' in other.stderr

    forced = call_tool(TOOL, '--out', out, '--num-train', 13, '--num-val', 2,
                       '--force')
    assert forced.returncode == 0, forced.stderr
    assert 'train: 13 images' in forced.stdout
    assert 'val: 2 images' in forced.stdout

    bad = call_tool(TOOL, '--out', tmp_path / 'bad', '--image-size', 16)
    assert bad.returncode == 2
    assert bad.stdout == ''
    lines = bad.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith('error: image_size must be')
    assert not (tmp_path / 'bad').exists()

    zero = call_tool(TOOL, '--out', out, '--num-val', 0)
    assert zero.returncode == 2
    assert zero.stderr.startswith('error: num_val must be')


def test_usage_errors_and_help_in_a_process(run_tool):
    """As a user meets them: both come before the generator is imported
    (and torch and mmdet with it), so these processes start fast."""
    wrong = run_tool(TOOL, '--out', 'unused', '--num-val', 'x')
    assert wrong.returncode == 2
    assert wrong.stderr.startswith('error: ')
    assert len(wrong.stderr.strip().splitlines()) == 1

    shown = run_tool(TOOL, '--help')
    assert shown.returncode == 0
    assert '--num-train' in shown.stdout and 'example' in shown.stdout
