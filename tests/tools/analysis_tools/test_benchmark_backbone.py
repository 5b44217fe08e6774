# Copyright (c) Res2Net-MMDet contributors. All rights reserved.
"""tools/analysis_tools/benchmark_backbone.py: the table, the JSON, checks."""
import json
import re

import pytest

TOOL = 'analysis_tools/benchmark_backbone.py'
ROLES = ('mmdet ResNet-50', 'mmdet Res2Net-50', 'Res2NetBackbone-50')


def test_table_and_json(call_tool, tmp_path):
    """Every backbone in every mode, one row each with ratios that agree
    with its own medians, and the deploy form's outputs checked."""
    out = tmp_path / 'speed.json'
    result = call_tool(TOOL, '--depth', 50, '--size', 64, 64, '--repeats', 2,
                       '--warmup', 0, '--threads', 1, '--modes', 'nchw',
                       'channels_last', 'deploy', '--out', out)
    assert result.returncode == 0, result.stderr[-3000:]
    data = json.loads(out.read_text())
    assert data['input_shape'] == [1, 3, 64, 64]
    assert data['repeats'] == 2 and not data['train']
    rows = {(r['backbone'], r['mode']): r for r in data['results']}
    expected = {(b, m)
                for b in ROLES
                for m in ('nchw', 'channels_last', 'deploy')}
    expected.add(('Res2NetBackbone-50 (cpu_channels_last=False)', 'nchw'))
    assert set(rows) == expected
    for (backbone, mode), row in rows.items():
        resnet = rows['mmdet ResNet-50', mode]['median_ms']
        mmdet = rows['mmdet Res2Net-50', 'nchw']['median_ms']
        assert row['vs_resnet'] == pytest.approx(row['median_ms'] / resnet)
        assert row['vs_mmdet_res2net_nchw'] == pytest.approx(row['median_ms'] /
                                                             mmdet)
        assert 0 < row['of_peak'] == pytest.approx(
            row['gflops_per_s'] / data['matmul_peak_gflops_per_s'])
        # The table line says the same.
        assert re.search(
            rf'\| {re.escape(backbone)} \| {mode} \| '
            rf'{row["median_ms"]:.1f} \| {row["vs_resnet"]:.2f} \|',
            result.stdout), (backbone, mode)
    # Same FLOPs counted for ours and mmdet's Res2Net, more than ResNet's.
    flops = {
        b: rows[b, 'nchw']['gflops_per_s'] * rows[b, 'nchw']['median_ms']
        for b in ROLES
    }
    assert flops['Res2NetBackbone-50'] == pytest.approx(
        flops['mmdet Res2Net-50'], rel=1e-6)
    assert flops['Res2NetBackbone-50'] > flops['mmdet ResNet-50']
    assert set(data['deploy_relative_error']) == {f'{b} deploy' for b in ROLES}
    assert all(e <= 1e-4 for e in data['deploy_relative_error'].values())
    assert 'Res2NetBackbone-50 deploy: outputs within' in result.stdout
    timed = 2 * (len(expected) + 1)  # 2 rounds of the rows and the peak
    assert f'{timed}/{timed}' in result.stdout  # the progress bar


def test_dla_family(call_tool, tmp_path):
    """Res2Net-DLA-60 and Res2NeXt-DLA-60 against DLA-60 (plain block) and
    ResNet-50, with the same fast paths: channels-last CPU inference (also
    timed off) and the deploy form, checked against eager."""
    out = tmp_path / 'dla.json'
    result = call_tool(TOOL, '--family', 'dla', '--size', 64, 64, '--repeats',
                       1, '--warmup', 0, '--threads', 1, '--modes', 'nchw',
                       'deploy', '--out', out)
    assert result.returncode == 0, result.stderr[-3000:]
    data = json.loads(out.read_text())
    assert data['family'] == 'dla'
    rows = {(r['backbone'], r['mode']): r for r in data['results']}
    dla = ('DLA-60', 'mmdet ResNet-50', 'Res2NetDLA-60',
           'Res2NetDLA-60 (Res2NeXt)')
    assert set(rows) == {
        (b, m)
        for b in dla
        for m in ('nchw', 'deploy')
    } | {('Res2NetDLA-60 (cpu_channels_last=False)', 'nchw')}
    for (_, mode), row in rows.items():
        plain = rows['DLA-60', mode]['median_ms']
        assert row['vs_dla60'] == pytest.approx(row['median_ms'] / plain)
        assert row['vs_dla60_nchw'] == pytest.approx(
            row['median_ms'] / rows['DLA-60', 'nchw']['median_ms'])
        assert 'vs_resnet' in row
    assert result.stdout.count('| backbone | mode | median ms | vs DLA-60 | '
                               'vs mmdet ResNet-50 | vs DLA-60 NCHW |') == 1
    assert set(data['deploy_relative_error']) == {f'{b} deploy' for b in dla}
    assert all(e <= 1e-4 for e in data['deploy_relative_error'].values())


def test_train_mode(call_tool):
    result = call_tool(TOOL, '--depth', 50, '--size', 64, 64, '--repeats', 1,
                       '--warmup', 0, '--train', '--modes', 'nchw')
    assert result.returncode == 0, result.stderr[-3000:]
    assert 'forward + backward, train mode' in result.stdout
    assert '| Res2NetBackbone-50 | nchw |' in result.stdout


@pytest.mark.parametrize('args, message', [
    (['--train', '--modes', 'deploy'], 'error: --train times training'),
    (['--repeats', 0], 'error: --repeats and --batch must be at least 1'),
    (['--amp', '--device', 'cpu'], 'error: --amp needs a GPU'),
    (['--family', 'dla', '--depth', 50], 'error: --depth 50 is for --family'),
    (['--depth', 50, '--size', 32, 32, '--modes', 'nchw'
      ], 'error: cannot calibrate the BN statistics on this input'),
])
def test_bad_options_are_one_line(call_tool, args, message):
    result = call_tool(TOOL, *args)
    assert result.returncode == 2
    assert result.stderr.startswith(message)
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.cuda
def test_cuda_amp(call_tool):
    result = call_tool(TOOL, '--depth', 50, '--size', 128, 128, '--repeats', 2,
                       '--device', 'cuda', '--amp', '--modes', 'nchw',
                       'channels_last', 'deploy')
    assert result.returncode == 0, result.stderr[-3000:]
    assert 'float16 autocast' in result.stdout
