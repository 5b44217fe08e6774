# Copyright (c) Res2Net-MMDet contributors. All rights reserved.
"""tools/analysis_tools/benchmark_train.py: the table, the JSON, checks."""
import json
import re

import pytest

TOOL = 'analysis_tools/benchmark_train.py'
DEMO_CONFIG = 'configs/demo/faster_rcnn_r2_50_fpn_demo.py'


def test_table_json_and_memory(call_tool, tmp_path):
    """Ours, ours with_cp and the ResNet detector, one row each; the peak
    memory of each from its own process."""
    out = tmp_path / 'train.json'
    result = call_tool(TOOL, DEMO_CONFIG, '--device', 'cpu', '--size', 64, 64,
                       '--batch', 1, '--repeats', 1, '--warmup', 0,
                       '--with-cp', '--against', 'resnet', '--out', out)
    assert result.returncode == 0, result.stderr[-3000:]
    data = json.loads(out.read_text())
    assert (data['batch'], data['size']) == (1, [64, 64])
    assert data['memory_kind'] == 'cpu_max_rss'
    rows = {r['backbone']: r for r in data['results']}
    assert list(rows) == ['ours', 'ours with_cp', 'resnet']
    for name, row in rows.items():
        assert row['vs_ours'] == pytest.approx(row['median_ms'] /
                                               rows['ours']['median_ms'])
        # A process holding torch, mmdet and a detector, and its training.
        assert 100 < row['peak_memory_mb'] < 64 * 1024
        assert row['memory_vs_ours'] == pytest.approx(
            row['peak_memory_mb'] / rows['ours']['peak_memory_mb'])
        assert re.search(
            rf'\| {name} \| {row["median_ms"]:.1f} \| '
            rf'{row["vs_ours"]:.2f} \| {row["peak_memory_mb"]:.1f} \|',
            result.stdout), name
    assert 'train_step (preprocess, forward, backward, optimizer step)' \
        in result.stdout


@pytest.mark.parametrize('args, message', [
    (['--cfg-options', 'model.backbone.type=ResNet'
      ], "error: the config's backbone is ResNet, not Res2NetBackbone"),
    (['--amp', '--device', 'cpu'], 'error: --amp needs a GPU'),
    (['--batch', 0], 'error: --repeats and --batch must be at least 1'),
])
def test_bad_input_is_one_line(call_tool, args, message):
    result = call_tool(TOOL, DEMO_CONFIG, *args)
    assert result.returncode == 2
    assert result.stderr.startswith(message)
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.cuda
def test_cuda_amp(call_tool):
    result = call_tool(TOOL, DEMO_CONFIG, '--size', 128, 128, '--repeats', 2,
                       '--device', 'cuda', '--amp')
    assert result.returncode == 0, result.stderr[-3000:]
    assert 'AMP' in result.stdout and 'cuda_max_allocated' in result.stdout
