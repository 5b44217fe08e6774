# Copyright (c) Res2Net-MMDet contributors. All rights reserved.
"""tools/analysis_tools/analyze_logs.py on the logs that training writes."""
import json

import numpy as np
import pytest
from matplotlib.image import imread

TOOL = 'analysis_tools/analyze_logs.py'
BLUE = (0x1f, 0x77, 0xb4)  # matplotlib's first two line colours
ORANGE = (0xff, 0x7f, 0x0e)


@pytest.fixture(scope='module')
def tool(load_tool):
    """The tool as a module, for its functions."""
    return load_tool(TOOL)


def write_log(work_dir, stamp='20240101_000000', lines=None):
    """A scalars.json as mmengine writes it, under ``work_dir``."""
    if lines is None:
        lines = [
            dict(lr=0.01, loss=2.0 - 0.1 * i, loss_cls=1.0, iter=i, step=i)
            for i in range(10, 110, 10)
        ]
        # mmengine logs a validation with step=epoch: 0 in an iteration
        # based run.
        lines.insert(5, {'coco/bbox_mAP': 0.1, 'time': 0.3, 'step': 0})
        lines.append({'coco/bbox_mAP': 0.2, 'time': 0.3, 'step': 0})
    path = work_dir / stamp / 'vis_data' / 'scalars.json'
    path.parent.mkdir(parents=True)
    path.write_text(''.join(json.dumps(line) + '\n' for line in lines))
    return path


def color_share(image, rgb):
    """The share of pixels near colour ``rgb``."""
    near = np.abs(image[..., :3] * 255 - np.array(rgb)).max(axis=-1) < 40
    return near.mean()


def test_plot_curve_overlays_runs(call_tool, trained_demo, tmp_path):
    other = tmp_path / 'other_run'
    write_log(other)
    out = tmp_path / 'curves' / 'curve.png'
    result = call_tool(TOOL, 'plot_curve', trained_demo.work_dir, other,
                       '--keys', 'loss', 'bbox_mAP', '--out', out, '--title',
                       'demo')
    assert result.returncode == 0, result.stderr[-3000:]
    image = imread(out)
    # Two subplots stacked: 8 x (1 + 2.6 * 2) inches at 100 dpi.
    assert image.shape[:2] == (620, 800)
    assert (image[..., :3] < 0.9).any(axis=-1).mean() > 0.02  # not blank
    # Both runs are drawn, each in its own colour.
    assert color_share(image, BLUE) > 0.001
    assert color_share(image, ORANGE) > 0.001


def test_legend_names_and_single_key(call_tool, tmp_path, user_error):
    write_log(tmp_path / 'a')
    write_log(tmp_path / 'b')
    out = tmp_path / 'lr.png'
    result = call_tool(TOOL, 'plot_curve', tmp_path / 'a', tmp_path / 'b',
                       '--keys', 'lr', '--legend', 'A', 'B', '--out', out)
    assert result.returncode == 0, result.stderr[-3000:]
    assert imread(out).shape[:2] == (360, 800)
    result = call_tool(TOOL, 'plot_curve', tmp_path / 'a', '--keys', 'lr',
                       '--legend', 'A', 'B', 'C', '--out', tmp_path / 'x.png')
    user_error(result, '--legend has 3 names')
    assert not (tmp_path / 'x.png').exists()


def test_validation_is_placed_after_its_training_iterations(tool, tmp_path):
    run = tool.load_runs([str(write_log(tmp_path / 'wd'))])[0]
    assert run.name == 'wd'
    key = tool.resolve_key('bbox_mAP', run)
    assert key == 'coco/bbox_mAP'
    assert tool.series(run, key) == ([50, 100], [0.1, 0.2])
    assert tool.series(run, 'loss')[0] == list(range(10, 110, 10))


def test_a_work_dir_means_its_newest_run(tool, tmp_path):
    write_log(tmp_path / 'wd', '20240101_000000')
    newest = write_log(tmp_path / 'wd', '20240102_000000')
    (tmp_path / 'wd' / '20240103_000000').mkdir()  # a test run: no scalars
    assert tool.find_log(str(tmp_path / 'wd')) == str(newest)
    assert tool.find_log(str(newest.parents[1])) == str(newest)
    names = [
        run.name for run in tool.load_runs(
            [str(tmp_path / 'wd'),
             str(tmp_path / 'wd' / '20240101_000000')])
    ]
    assert names == ['wd/20240102_000000', 'wd/20240101_000000']


def test_a_line_being_written_is_skipped(tool, tmp_path):
    path = write_log(tmp_path / 'wd')
    with open(path, 'a') as f:
        f.write('{"lr": 0.01, "lo')
    assert len(tool.load_records(str(path))) == 12


def test_missing_log(call_tool, tmp_path, user_error):
    out = tmp_path / 'curve.png'
    result = call_tool(TOOL, 'plot_curve', tmp_path / 'nope', '--keys', 'loss',
                       '--out', out)
    user_error(result, 'log not found', str(tmp_path / 'nope'))
    (tmp_path / 'empty').mkdir()
    result = call_tool(TOOL, 'plot_curve', tmp_path / 'empty', '--keys',
                       'loss', '--out', out)
    user_error(result, 'no vis_data/scalars.json under')
    assert not out.exists()


def test_unknown_key_names_the_keys_the_log_has(call_tool, tmp_path,
                                                user_error):
    good = write_log(tmp_path / 'a')
    write_log(tmp_path / 'b', lines=[dict(lr=0.01, loss=1.0, step=1)])
    out = tmp_path / 'curve.png'
    result = call_tool(TOOL, 'plot_curve', good, tmp_path / 'b', '--keys',
                       'loss', 'bbox_mAP', '--out', out)
    user_error(result, "key 'bbox_mAP' not in", str(tmp_path / 'b'),
               'it has: loss, lr')
    assert sorted(p.name for p in tmp_path.iterdir()) == ['a', 'b']


def test_cal_train_time(call_tool, tmp_path):
    lines = [
        dict(lr=0.01, loss=1.0, time=t, step=s)
        for s, t in ((10, 5.0), (20, 1.0), (30, 3.0))
    ]
    write_log(tmp_path / 'wd', lines=lines)
    result = call_tool(TOOL, 'cal_train_time', tmp_path / 'wd')
    assert result.returncode == 0, result.stderr[-3000:]
    # The warm-up window is left out.
    assert 'average iter time: 2.0000 s/iter' in result.stdout
    assert 'slowest window: up to iteration 30' in result.stdout
