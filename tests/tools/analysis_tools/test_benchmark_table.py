# Copyright (c) Res2Net-MMDet contributors. All rights reserved.
"""benchmark_table.py: the zoo table and metafile from real short runs."""
import json

import pytest
import yaml

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
        assert timing == dict(
            value=timing['value'],
            batch_size=1,
            hardware=got['hardware'],
            backend='PyTorch',
            mode='FP32',
            # The padded input as mmdet's metafiles write it: (w,h).
            resolution='({1},{0})'.format(*got['input_shape']))


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
    assert result.stdout.strip() in (repo / 'README.md').read_text()
    assert (tmp_path / 'metafile.yml').read_text() == \
        (repo / 'metafile.yml').read_text()
    rows = body(table_rows(result.stdout))
    assert [row[5] for row in rows] == \
        ['43.0', '43.6', '45.7', '46.4', '47.5']
    # Every reference config's fps was measured by benchmark.py; each cell
    # is that benchmark.json's, labelled with its device.
    for row in rows:
        name = row[7][1:].split(']')[0]
        bench = json.loads((speed_dir / name / 'benchmark.json').read_text())
        assert bench['config'] == f'configs/{name}.py'
        assert row[4] == fps_cell(bench['fps'], bench['hardware'])


def test_speed_from_fills_the_reference_fps(call_tool, runs, tmp_path,
                                            table_rows, fps_cell):
    speed_dir = tmp_path / 'speed'
    (speed_dir / 'mask_rcnn_r2_101_fpn_2x').mkdir(parents=True)
    bench = json.loads((runs[MASK] / 'benchmark.json').read_text())
    # As benchmark.py --deploy writes it: the form shows in the label.
    bench.update(fuse_conv_bn=True, channels_last=True)
    (speed_dir / 'mask_rcnn_r2_101_fpn_2x' /
     'benchmark.json').write_text(json.dumps(bench))
    result = call_tool(TABLE, '--reference', '--speed-from', speed_dir,
                       '--metafile', tmp_path / 'metafile.yml')
    assert result.returncode == 0, result.stderr
    fps = {row[7]: row[4] for row in body(table_rows(result.stdout))}
    assert fps.pop(f'[mask_rcnn_r2_101_fpn_2x]({MASK})') == fps_cell(
        bench['fps'], f'{bench["hardware"]}, fused BN, channels-last')
    assert set(fps.values()) == {'–'}  # the others were not measured
    assert result.stderr.count('Inf time (fps) –: no benchmark.json') == 4
    models = {
        m['Name']: m
        for m in yaml.safe_load((tmp_path /
                                 'metafile.yml').read_text())['Models']
    }
    timing, = models['mask_rcnn_r2_101_fpn_2x']['Metadata'][
        'inference time (ms/im)']
    assert (timing['hardware'], timing['mode']) == (bench['hardware'], 'FP32')
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
