# Copyright (c) Res2Net-MMDet contributors. All rights reserved.
"""tools/analysis_tools/analyze_logs.py on the logs that training writes, as
a user runs it: its arguments, output, exit status and files.

Finding and reading the logs is tested in
tests/projects/res2net/analysis/test_curves.py and
tests/projects/res2net/engine/test_logs.py.
"""

import numpy as np
import pytest
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


def _epoch_log(work_dir, write_log, stamp='20240101_000000', ap=0.1):
    """An epoch-based run's log as mmengine writes it, under both its names:
    4 epochs of 2 logging windows, validated every 2 epochs (logged with
    step=epoch, AP ``ap`` times the epoch); mmdet's docs call
    ``<timestamp>.json`` ``log.json``."""
    lines = []
    for epoch in range(1, 5):
        for window, time in enumerate((3.0, 0.5 + 0.5 * epoch)):
            step = 20 * (epoch - 1) + 10 * (window + 1)
            lines.append(
                dict(
                    lr=0.01,
                    loss=2.0 - 0.1 * step / 10,
                    loss_cls=1.0 - 0.05 * step / 10,
                    loss_bbox=0.5,
                    time=time,
                    epoch=epoch,
                    iter=step,
                    step=step))
        if epoch % 2 == 0:
            lines.append({'coco/bbox_mAP': ap * epoch, 'step': epoch})
    scalars = write_log(work_dir, stamp, lines=lines)
    log_json = scalars.with_name(f'{stamp}.json')
    log_json.write_text(scalars.read_text())
    return log_json


def test_mmdets_documented_commands(call_tool, tmp_path, write_log, user_error,
                                    monkeypatch):
    """mmdet's useful_tools examples, their log.json the run's
    <timestamp>.json: a pdf by --out's extension, two runs compared, the
    train time with mmdet's per-epoch lines, and without --out a window."""
    import matplotlib.pyplot as plt

    from projects.res2net.analysis import curves
    log = _epoch_log(tmp_path / 'a', write_log)
    log2 = _epoch_log(tmp_path / 'b', write_log, ap=0.05)

    out = tmp_path / 'losses.pdf'
    result = call_tool(TOOL, 'plot_curve', log, '--keys', 'loss_cls',
                       'loss_bbox', '--out', out)
    assert result.returncode == 0, result.stderr[-3000:]
    assert out.read_bytes().startswith(b'%PDF')

    out = tmp_path / 'map.png'
    result = call_tool(TOOL, 'plot_curve', log, log2, '--keys', 'bbox_mAP',
                       '--legend', 'run1', 'run2', '--out', out)
    assert result.returncode == 0, result.stderr[-3000:]
    image = imread(out)
    assert color_share(image, BLUE) > 0.001
    assert color_share(image, ORANGE) > 0.001

    for extra in ([], ['--include-outliers']):
        result = call_tool(TOOL, 'cal_train_time', log, *extra)
        assert result.returncode == 0, result.stderr[-3000:]
        assert f'-----Analyze train time of {log}-----' in result.stdout
        # Each epoch's first window (3.0 s) is left out, as mmdet does.
        slow, fast, mean = (2.75, 2.0, 2.375) if extra else (2.5, 1.0, 1.75)
        assert f'slowest epoch 4, average time is {slow:.4f} s/iter' \
            in result.stdout
        assert f'fastest epoch 1, average time is {fast:.4f} s/iter' \
            in result.stdout
        assert 'time std over epochs is' in result.stdout
        assert f'average iter time: {mean:.4f} s/iter' in result.stdout

    # No --out: mmdet shows the figure. Here no display: one line...
    args = ('plot_curve', log, '--keys', 'loss_cls', '--legend', 'loss_cls')
    user_error(call_tool(TOOL, *args), 'no --out', 'pass --out curve.png')
    # ... and where a window can open, pyplot shows it.
    shown = []

    def show():  # what the window would show: each subplot and its legend
        for ax in plt.gcf().axes:
            legend = [text.get_text() for text in ax.get_legend().texts]
            shown.append((ax.get_ylabel(), legend))

    monkeypatch.setattr(curves, 'FILE_BACKENDS', ())
    monkeypatch.setattr(plt, 'show', show)
    result = call_tool(TOOL, *args)
    assert result.returncode == 0, result.stderr[-3000:]
    assert shown == [('loss_cls', ['loss_cls'])]
    assert plt.get_fignums() == []  # closed after the window


def test_mmdets_plot_options(call_tool, tmp_path, write_log):
    """--start-epoch, --eval-interval, --style and --backend of mmdet's
    usage line: from epoch 3 on, validated every 2 epochs, seaborn's dark
    background (its axes' colour #eaeaf2)."""
    log = _epoch_log(tmp_path / 'a', write_log)
    out = tmp_path / 'curve.svg'
    result = call_tool(TOOL, 'plot_curve', log, '--keys', 'loss', 'bbox_mAP',
                       '--start-epoch', 3, '--eval-interval', 2, '--style',
                       'dark', '--backend', 'agg', '--out', out)
    assert result.returncode == 0, result.stderr[-3000:]
    svg = out.read_text()
    assert svg.startswith('<?xml') and '#eaeaf2' in svg


@pytest.mark.parametrize('args, fragments', [
    (['--eval-interval', 1],
     ['--eval-interval 1', 'coco/bbox_mAP in epochs 2, 4, not in epoch 1']),
    (['--start-epoch', 9], ['--start-epoch 9', 'ends in epoch 4']),
    (['--out', '{tmp}/curve.xyz'], ['curve.xyz', 'no .xyz files']),
    (['--backend', 'nosuch', '--out', '{tmp}/c.png'], ['--backend nosuch']),
])
def test_mmdets_plot_options_that_do_not_fit(call_tool, tmp_path, write_log,
                                             user_error, args, fragments):
    log = _epoch_log(tmp_path / 'a', write_log)
    args = [str(a).format(tmp=tmp_path) for a in args]
    user_error(
        call_tool(TOOL, 'plot_curve', log, '--keys', 'bbox_mAP', *args),
        *fragments)
    assert sorted(p.name for p in tmp_path.iterdir()) == ['a']
