# Copyright (c) Res2Net-MMDet contributors. All rights reserved.
"""tools/misc/zoo_demo.py: from configs to the zoo table of their runs."""
import re

import yaml

from projects.res2net.zoo.table import REFERENCE

TOOL = 'misc/zoo_demo.py'


def test_steps_and_table_of_the_runs(zoo_demo, call_tool):
    """Seven steps (train, test, benchmark per config, then the table), and
    the table is benchmark_table.py's on the same work dirs (its columns
    are checked against the runs in test_benchmark_table.py)."""
    out = zoo_demo.result.stdout
    steps = re.findall(r'^\[(\d)/7\] python tools/(\S+)', out, re.M)
    assert steps == [('1', 'train.py'), ('2', 'test.py'),
                     ('3', 'analysis_tools/benchmark.py'), ('4', 'train.py'),
                     ('5', 'test.py'), ('6', 'analysis_tools/benchmark.py'),
                     ('7', 'analysis_tools/benchmark_table.py')]
    table = call_tool('analysis_tools/benchmark_table.py',
                      *zoo_demo.work_dirs.values())
    assert table.returncode == 0, table.stderr
    assert table.stdout.count('\n|') == 3  # the header, its rule, 2 rows
    assert table.stdout.strip() in out
    models = yaml.safe_load(
        (zoo_demo.root / 'metafile.yml').read_text())['Models']
    assert [model['Name'] for model in models] == [
        'faster_rcnn_r2_101_fpn_2x_demo', 'mask_rcnn_r2_101_fpn_2x_demo'
    ]


def test_bad_configs_stop_before_any_run(call_tool, tmp_path, user_error):
    work_dir = tmp_path / 'zoo'
    result = call_tool(TOOL, '--configs', 'configs/nope.py', '--work-dir',
                       work_dir)
    user_error(result, 'config file not found', 'configs/nope.py')
    # The demo config trains by iterations; --epochs cannot apply to it.
    result = call_tool(TOOL, '--configs',
                       'configs/faster_rcnn_r2_101_fpn_2x.py',
                       'configs/demo/faster_rcnn_r2_50_fpn_demo.py',
                       '--work-dir', work_dir)
    user_error(
        result, 'faster_rcnn_r2_50_fpn_demo.py trains with '
        'IterBasedTrainLoop')
    assert not work_dir.exists()


def test_a_failing_step_names_itself(call_tool, tiny_demo_data, tmp_path,
                                     user_error):
    """A data root without the demo data: train.py's own one-line error is
    shown, then which step failed."""
    empty = tmp_path / 'empty'
    empty.mkdir()
    result = call_tool(TOOL, '--configs',
                       'configs/faster_rcnn_r2_101_fpn_2x.py', '--data', empty,
                       '--work-dir', tmp_path / 'zoo')
    assert 'error: train_dataloader' in result.stderr
    user_error(result, 'step 1, tools/train.py, failed (exit 2)')


def test_model_zoo_doc_shows_the_demo_table_of_the_five_configs(
        repo, table_rows, fps_cell):
    """docs/model_zoo.md's demo-data table: a row per reference config,
    in order, whose cells are what benchmark_table.py prints for a CPU
    run."""
    doc = (repo / 'docs' / 'model_zoo.md').read_text()
    section = doc.split('## Demo-data runs of the five configs')[1]
    section = section.split('\n#')[0]
    assert '**Demo data, not COCO.**' in section
    assert 'python tools/misc/zoo_demo.py' in section
    rows = table_rows(section, '| R2-101')
    assert len(rows) == len(REFERENCE)
    for row, reference in zip(rows, REFERENCE):
        backbone, style, schedule, memory, fps, box, mask, config, _ = row
        # The doc is in docs/: its links to configs go up one folder.
        assert config == f'[{reference.name}](../{reference.config})'
        assert (backbone, style, schedule, memory) == ('R2-101', 'pytorch',
                                                       '1e', '–')
        # Labelled with the CPU it was measured on, in the zoo's decimals.
        value, label = re.fullmatch(r'(\d+\.\d+) \((.+ CPU, \d+ threads)\)',
                                    fps).groups()
        assert fps == fps_cell(float(value), label)
        assert float(value) > 0
        assert 0 <= float(box) <= 100
        if reference.mask_ap is None:
            assert mask == '–'
        else:
            assert 0 <= float(mask) <= 100


def test_a_second_run_does_only_what_is_left(zoo_demo, call_tool, table_rows):
    """Finished runs are kept (zoo_slurm.py's rule too): only the table."""

    def files() -> dict:
        return {
            path: path.stat().st_mtime_ns
            for work_dir in zoo_demo.work_dirs.values()
            for path in work_dir.rglob('*') if path.is_file()
        }

    before = files()
    again = call_tool(TOOL, '--configs', *zoo_demo.work_dirs, *zoo_demo.args)
    assert again.returncode == 0, again.stderr[-3000:]
    for config, work_dir in zoo_demo.work_dirs.items():
        assert f'{work_dir.name}: finished (trained, tested, benchmarked) ' \
            f'in {work_dir}; 0 of 3 steps left' in again.stdout
    steps = re.findall(r'^\[(\d)/(\d)\] python tools/(\S+)', again.stdout,
                       re.M)
    assert steps == [('1', '1', 'analysis_tools/benchmark_table.py')]
    # Nothing of the runs was written again, and the table is read from
    # their files: cell for cell the first run's (its speed cells are the
    # stored measurements, not new ones). The steps' own lines ("done in
    # 9 s") are timings and are not compared.
    assert files() == before
    first = table_rows(zoo_demo.result.stdout)
    assert len(first) == 4  # the header, its rule, 2 rows
    assert table_rows(again.stdout) == first
