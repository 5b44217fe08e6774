# Copyright (c) Res2Net-MMDet contributors. All rights reserved.
"""benchmark_table.py: the zoo table and metafile from real short runs."""
import json

import pytest
import yaml

from projects.res2net.zoo.table import REFERENCE

FASTER = 'configs/faster_rcnn_r2_101_fpn_2x.py'
MASK = 'configs/mask_rcnn_r2_101_fpn_2x.py'
TABLE = 'analysis_tools/benchmark_table.py'


@pytest.fixture(scope='module')
def runs(zoo_demo) -> dict:
    """Work dirs of train.py (one step), test.py and benchmark.py."""
    return zoo_demo.work_dirs


def body(rows: list) -> list:
    """A table's rows below its header and rule."""
    return rows[2:]


def facts(work_dir) -> dict:
    """What the tools wrote into a work dir, read independently."""
    test = json.loads((work_dir / 'metrics.json').read_text())
    bench = json.loads((work_dir / 'benchmark.json').read_text())
    scalars = list(work_dir.glob('*/vis_data/scalars.json'))
    train_log = [path for path in scalars
                 if '"loss"' in path.read_text()][-1].parent.parent
    return dict(
        test=test,
        fps=bench['fps'],
        ms=bench['ms_per_image'],
        hardware=bench['hardware'],
        input_shape=bench['input_shape'],
        log=train_log / f'{train_log.name}.log',
        memory=[
            json.loads(line).get('memory')
            for line in (train_log / 'vis_data' /
                         'scalars.json').read_text().splitlines()
        ])


def test_every_column_comes_from_the_runs(call_tool, runs, tmp_path,
                                          table_rows, fps_cell):
    metafile = tmp_path / 'metafile.yml'
    # An entry of another model, which an update must keep.
    metafile.write_text(
        yaml.safe_dump(dict(Models=[dict(Name='other', Results=[])])))
    result = call_tool(TABLE, runs[FASTER], runs[MASK], '--metafile', metafile)
    assert result.returncode == 0, result.stderr
    rows = body(table_rows(result.stdout))
    assert len(rows) == 2
    models = {
        m['Name']: m
        for m in yaml.safe_load(metafile.read_text())['Models']
    }
    assert 'other' in models

    for config, row in zip((FASTER, MASK), rows):
        got = facts(runs[config])
        metrics = got['test']['metrics']
        backbone, style, schedule, memory, fps, box, mask, link, download = \
            row
        assert (backbone, style, schedule) == ('R2-101', 'pytorch', '1e')
        if any(got['memory']):  # mmengine logs memory on CUDA only
            assert memory == f'{max(m for m in got["memory"] if m) / 1024:.1f}'
        else:
            assert memory == '–'
            assert 'mmengine logs GPU memory only' in result.stderr
        assert fps == fps_cell(got['fps'], got['hardware'])
        assert box == f'{100 * metrics["coco/bbox_mAP"]:.1f}'
        if config == MASK:
            assert mask == f'{100 * metrics["coco/segm_mAP"]:.1f}'
        else:
            assert mask == '–'
        name = config.split('/')[-1][:-3]
        assert link == f'[{name}]({config})'
        assert download == (f'model: `{got["test"]["checkpoint"]}` \\| '
                            f'log: `{got["log"]}`')
        assert got['log'].is_file()

        entry = models[f'{name}_demo']  # marked: trained on the demo data
        assert entry['Config'] == config
        assert entry['Weights'] == got['test']['checkpoint']
        assert entry['Metadata']['Epochs'] == 1
        assert entry['Metadata']['Training Data'] == 'demo data'
        assert 'Training Memory (GB)' not in entry['Metadata'] or \
            any(got['memory'])
        results = {r['Task']: r['Metrics'] for r in entry['Results']}
        assert results['Object Detection'] == {'box AP': float(box)}
        if config == MASK:
            assert results['Instance Segmentation'] == {'mask AP': float(mask)}
        timing, = entry['Metadata']['inference time (ms/im)']
        assert timing['value'] == pytest.approx(got['ms'], abs=0.01)
        # mmdet's metafile schema, the device stated.
        assert timing == {
            'value': timing['value'],
            'hardware': got['hardware'],
            'backend': 'PyTorch',
            'batch size': 1,
            'mode': 'FP32',
            # The padded input as mmdet's metafiles write it: (h, w).
            'resolution': '({}, {})'.format(*got['input_shape']),
        }


def test_compare_adds_reference_and_difference(call_tool, runs, table_rows):
    result = call_tool(TABLE, runs[MASK], '--compare')
    assert result.returncode == 0, result.stderr
    _, _, _, memory, fps, box, mask, _, _ = body(table_rows(result.stdout))[0]
    if memory.startswith('–'):  # mmengine logs GPU memory only
        assert memory == '– (ref 7.9)'
    else:
        value = float(memory.split()[0])
        assert memory == f'{value:.1f} (ref 7.9, Δ {value - 7.9:+.1f})'
    assert fps.endswith('(ref –)')  # the zoo publishes no speed
    value = float(box.split()[0])
    assert box == f'{value:.1f} (ref 43.6, Δ {value - 43.6:+.1f})'
    value = float(mask.split()[0])
    assert mask == f'{value:.1f} (ref 38.7, Δ {value - 38.7:+.1f})'


def test_missing_pieces_show_a_dash_and_say_why(call_tool, runs, ram_dir,
                                                linked_copy, table_rows):
    # No file of the run is written to, two are removed.
    work_dir = linked_copy(runs[FASTER], ram_dir / 'copy')
    (work_dir / 'benchmark.json').unlink()
    (work_dir / 'metrics.json').unlink()
    result = call_tool(TABLE, work_dir)
    assert result.returncode == 0, result.stderr
    _, _, _, _, fps, box, _, _, _ = body(table_rows(result.stdout))[0]
    assert (fps, box) == ('–', '–')
    assert 'Inf time (fps) –: no benchmark.json' in result.stderr
    assert 'box AP –: no metrics.json' in result.stderr


def test_readme_and_metafile_hold_the_generated_reference(
        call_tool, repo, tmp_path, table_rows, fps_cell):
    speed_dir = repo / 'docs' / 'zoo_speed'
    result = call_tool(TABLE, '--reference', '--speed-from', speed_dir,
                       '--metafile', tmp_path / 'metafile.yml')
    assert result.returncode == 0, result.stderr
    assert (tmp_path / 'metafile.yml').read_text() == \
        (repo / 'metafile.yml').read_text()
    # The README's COCO table is the printed one: the zoo's figures of each
    # model (its row: the one with the checkpoint), and no speed of ours,
    # which has its device's table in docs/speed.md.
    assert result.stdout.strip() in (repo / 'README.md').read_text()
    readme = table_rows((repo / 'README.md').read_text())
    for reference in REFERENCE:
        row, = (
            row for row in readme
            if any(reference.weights in cell for cell in row))
        assert any(f']({reference.config})' in cell for cell in row)
        for value in (reference.memory_gb, reference.box_ap,
                      reference.mask_ap):
            assert ('–' if value is None else f'{value:.1f}') in row
        assert not any('CPU' in cell or 'threads' in cell for cell in row)
    rows = body(table_rows(result.stdout))
    assert [row[5] for row in rows] == \
        ['43.0', '43.6', '45.7', '46.4', '47.5']
    models = {
        m['Name']: m
        for m in yaml.safe_load((repo / 'metafile.yml').read_text())['Models']
    }
    # Every reference config's speed was measured by benchmark.py: a GPU's
    # shows in the zoo's column, a CPU's does not; the metafile has each
    # with its device.
    for row in rows:
        name = row[7][1:].split(']')[0]
        path = speed_dir / name / 'benchmark.json'
        bench = json.loads(path.read_text())
        assert bench['config'] == f'configs/{name}.py'
        if bench['device'] == 'cpu':
            assert row[4] == '–'
            assert f'{name}: Inf time (fps) –: {path} was measured on ' \
                f'{bench["hardware"]}, not a GPU' in result.stderr
        else:
            assert row[4] == fps_cell(bench['fps'], bench['hardware'])
        timing, = models[name]['Metadata']['inference time (ms/im)']
        assert timing['value'] == pytest.approx(
            bench['ms_per_image'], abs=0.01)
        assert timing['hardware'] == bench['hardware']
        assert timing['batch size'] == bench['batch_size'] == 1


def test_speed_doc_holds_the_generated_speed_table(call_tool, repo,
                                                   table_rows):
    speed_dir = repo / 'docs' / 'zoo_speed'
    result = call_tool(TABLE, '--speed-table', speed_dir)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() in (repo / 'docs' / 'speed.md').read_text()
    rows = body(table_rows(result.stdout))
    names = sorted(p.parent.name for p in speed_dir.glob('*/benchmark.json'))
    # The five reference configs first, in the zoo's order, then the rest.
    assert [row[0] for row in rows[:5]] == [
        f'`configs/{name}.py`'
        for name in ('faster_rcnn_r2_101_fpn_2x', 'mask_rcnn_r2_101_fpn_2x',
                     'cascade_rcnn_r2_101_fpn_20e',
                     'cascade_mask_rcnn_r2_101_fpn_20e', 'htc_r2_101_fpn_20e')
    ]
    assert sorted(row[0] for row in rows) == sorted(f'`configs/{name}.py`'
                                                    for name in names)
    for row in rows:
        check_speed_row(row, speed_dir / row[0][9:-4] / 'benchmark.json')


def check_speed_row(row: list, path) -> None:
    """A row of --speed-table against the benchmark.json it was read from."""
    bench = json.loads(path.read_text())
    config, fps, ms, memory, shape, device = row
    assert config == f'`{bench["config"]}`'
    assert fps == f'{bench["fps"]:.{1 if bench["fps"] >= 10 else 2}f}'
    assert ms == f'{bench["ms_per_image"]:.0f}'
    assert memory == f'{bench["peak_memory_mb"]:.0f}'
    assert shape == '{}×{}'.format(*bench['input_shape'])
    assert device.startswith(bench['hardware'])


def test_speed_table_reads_each_benchmark_json(call_tool, repo, tmp_path,
                                               table_rows):
    speed_dir = tmp_path / 'speed'
    source = repo / 'docs' / 'zoo_speed' / 'faster_rcnn_r2_101_fpn_2x'
    bench = json.loads((source / 'benchmark.json').read_text())
    forms = {
        # As benchmark.py --deploy --amp on a GPU writes it.
        'htc_r2_101_fpn_20e':
        dict(
            bench,
            config='configs/htc_r2_101_fpn_20e.py',
            device='cuda',
            hardware='NVIDIA H100 80GB HBM3',
            fps=12.345,
            ms_per_image=81.0,
            amp=True,
            fuse_conv_bn=True,
            channels_last=True),
        'a_config_of_mine':
        dict(bench, config='configs/a_config_of_mine.py'),
        'faster_rcnn_r2_101_fpn_2x':
        bench,
    }
    for name, content in forms.items():
        (speed_dir / name).mkdir(parents=True)
        (speed_dir / name / 'benchmark.json').write_text(json.dumps(content))
    result = call_tool(TABLE, '--speed-table', speed_dir)
    assert result.returncode == 0, result.stderr
    rows = body(table_rows(result.stdout))
    assert [row[0] for row in rows] == [
        '`configs/faster_rcnn_r2_101_fpn_2x.py`',
        '`configs/htc_r2_101_fpn_20e.py`', '`configs/a_config_of_mine.py`'
    ]
    for row in rows:
        check_speed_row(row, speed_dir / row[0][9:-4] / 'benchmark.json')
    assert rows[1][5] == ('NVIDIA H100 80GB HBM3, fp16, fused BN, '
                          'channels-last')
    assert rows[2][5] == bench['hardware']

    result = call_tool(TABLE, '--speed-table', tmp_path / 'nope')
    assert result.returncode == 2
    assert result.stderr.strip().startswith('error: speed dir not found')
    (tmp_path / 'empty').mkdir()
    result = call_tool(TABLE, '--speed-table', tmp_path / 'empty')
    assert result.returncode == 2
    assert result.stderr.strip().startswith(
        'error: no <config name>/benchmark.json in')
    result = call_tool(TABLE, '--speed-table', speed_dir, '--reference')
    assert result.returncode == 2
    assert result.stderr.strip().endswith('--speed-table DIR goes alone')


def test_speed_from_fills_the_reference_fps(call_tool, runs, tmp_path,
                                            table_rows, fps_cell):
    speed_dir = tmp_path / 'speed'
    bench = json.loads((runs[MASK] / 'benchmark.json').read_text())
    written = {
        # As benchmark.py --deploy on a GPU writes it: the GPU's name and
        # the form show in the label.
        'mask_rcnn_r2_101_fpn_2x':
        dict(
            bench,
            device='cuda',
            hardware='NVIDIA H100 80GB HBM3',
            fps=21.5,
            ms_per_image=46.5,
            fuse_conv_bn=True,
            channels_last=True),
        # A CPU's: not in the zoo's (GPU) column, in the metafile.
        'faster_rcnn_r2_101_fpn_2x':
        dict(bench, config=FASTER),
    }
    for name, content in written.items():
        (speed_dir / name).mkdir(parents=True)
        (speed_dir / name / 'benchmark.json').write_text(json.dumps(content))
    gpu, cpu = written.values()
    result = call_tool(TABLE, '--reference', '--speed-from', speed_dir,
                       '--metafile', tmp_path / 'metafile.yml')
    assert result.returncode == 0, result.stderr
    fps = {row[7]: row[4] for row in body(table_rows(result.stdout))}
    assert fps.pop(f'[mask_rcnn_r2_101_fpn_2x]({MASK})') == fps_cell(
        gpu['fps'], f'{gpu["hardware"]}, fused BN, channels-last')
    assert set(fps.values()) == {'–'}  # the others: a CPU's, or none
    assert result.stderr.count('Inf time (fps) –: no benchmark.json') == 3
    assert (f'faster_rcnn_r2_101_fpn_2x: Inf time (fps) –: '
            f'{speed_dir / "faster_rcnn_r2_101_fpn_2x" / "benchmark.json"} '
            f'was measured on {cpu["hardware"]}, not a GPU') in result.stderr
    models = {
        m['Name']: m
        for m in yaml.safe_load((tmp_path /
                                 'metafile.yml').read_text())['Models']
    }
    for name, content in written.items():
        timing, = models[name]['Metadata']['inference time (ms/im)']
        assert timing['value'] == pytest.approx(
            content['ms_per_image'], abs=0.01)
        assert timing['hardware'] == content['hardware']
        assert timing['mode'] == 'FP32'
        assert timing['backend'] == ('PyTorch (fused BN, channels-last)'
                                     if name.startswith('mask') else 'PyTorch')
    assert 'inference time (ms/im)' not in models['htc_r2_101_fpn_20e'][
        'Metadata']

    result = call_tool(TABLE, runs[MASK], '--speed-from', speed_dir)
    assert result.returncode == 2
    assert result.stderr.strip().endswith('--speed-from goes with --reference '
                                          "(a work dir's own benchmark.json "
                                          'gives its fps)')


def test_bad_input_is_one_line(call_tool, tmp_path):
    result = call_tool(TABLE, tmp_path / 'nope')
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f'error: work dir not found: {tmp_path / "nope"}; pass the '
        '--work-dir of tools/train.py and tools/test.py')
    empty = tmp_path / 'empty'
    empty.mkdir()
    result = call_tool(TABLE, empty, '--metafile', tmp_path / 'm.yml')
    assert result.returncode == 2
    assert 'no training log and no metrics.json' in result.stderr
    assert not (tmp_path / 'm.yml').exists()
