# Copyright (c) Res2Net-MMDet contributors. All rights reserved.
"""tools/analysis_tools/analyze_logs.py on the logs that training writes, as
a user runs it: its arguments, output, exit status and files.

Finding and reading the logs is tested in
tests/projects/res2net/analysis/test_curves.py and
tests/projects/res2net/engine/test_logs.py.
"""

import numpy as np
from matplotlib.image import imread

TOOL = 'analysis_tools/analyze_logs.py'
BLUE = (0x1f, 0x77, 0xb4)  # matplotlib's first two line colours
ORANGE = (0xff, 0x7f, 0x0e)


def color_share(image, rgb):
    """The share of pixels near colour ``rgb``."""
    near = np.abs(image[..., :3] * 255 - np.array(rgb)).max(axis=-1) < 40
    return near.mean()


def test_plot_curve_overlays_runs(call_tool, trained_demo, tmp_path,
                                  write_log):
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


def test_legend_names_and_single_key(call_tool, tmp_path, user_error,
                                     write_log):
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
                                                user_error, write_log):
    good = write_log(tmp_path / 'a')
    write_log(tmp_path / 'b', lines=[dict(lr=0.01, loss=1.0, step=1)])
    out = tmp_path / 'curve.png'
    result = call_tool(TOOL, 'plot_curve', good, tmp_path / 'b', '--keys',
                       'loss', 'bbox_mAP', '--out', out)
    user_error(result, "key 'bbox_mAP' not in", str(tmp_path / 'b'),
               'it has: loss, lr')
    assert sorted(p.name for p in tmp_path.iterdir()) == ['a', 'b']


def test_cal_train_time(call_tool, tmp_path, write_log):
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
