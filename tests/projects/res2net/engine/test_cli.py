# Copyright (c) Res2Net-MMDet contributors. All rights reserved.
"""The pieces the tools share: config loading, ``--cfg-options``, data
checks, AP table."""
import gc

import pytest
from mmengine.config import DictAction

from projects.res2net.engine.cli import (ap_table, check_data, load_config,
                                         parse_cfg_options, run_tool)
from projects.res2net.engine.forked import run_script
from projects.res2net.errors import UserError

HTC = 'configs/htc_r2_101_fpn_20e.py'


def test_data_root_override_moves_every_dataset_path(repo):
    cfg = load_config(str(repo / HTC), {'data_root': '/datasets/coco'})
    assert cfg.data_root == '/datasets/coco/'
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        assert cfg[loader].dataset.data_root == '/datasets/coco/'
    assert cfg.val_evaluator.ann_file == \
        '/datasets/coco/annotations/instances_val2017.json'
    # Relative parts stay relative to the root.
    assert cfg.train_dataloader.dataset.data_prefix.seg == \
        'stuffthingmaps/train2017/'


def test_explicit_options_win_over_the_moved_root(repo):
    cfg = load_config(
        str(repo / HTC), {
            'data_root': '/datasets/coco/',
            'val_evaluator.ann_file': '/elsewhere/val.json'
        })
    assert cfg.val_evaluator.ann_file == '/elsewhere/val.json'
    assert cfg.test_evaluator.ann_file == \
        '/datasets/coco/annotations/instances_val2017.json'


def test_without_data_root_nothing_moves(repo):
    cfg = load_config(str(repo / HTC), {'train_cfg.max_epochs': 1})
    assert cfg.train_dataloader.dataset.data_root == 'data/coco/'
    assert cfg.train_cfg.max_epochs == 1


def test_bad_config_files_are_user_errors(tmp_path):
    with pytest.raises(UserError, match='config file not found'):
        load_config(str(tmp_path / 'missing.py'))
    broken = tmp_path / 'broken.py'
    broken.write_text('model = dict(\n')
    with pytest.raises(UserError, match='cannot read config'):
        load_config(str(broken))


@pytest.mark.parametrize(
    'option, value',
    [
        # Spaces inside a value stay; those around it and its items go.
        ('data_root=/data/my set/', '/data/my set/'),
        ('data_root= /data/my set/ ', '/data/my set/'),
        ('data_root=/tmp/données é/демо/', '/tmp/données é/демо/'),
        ("metainfo.classes=('sports ball','cat')", ('sports ball', 'cat')),
        ("metainfo.classes=( 'sports ball' , 'cat' )", ('sports ball', 'cat')),
        ('metainfo.classes="(\'sports ball\', \'cat\')"',
         ('sports ball', 'cat')),
        ("metainfo.classes=('sports ball',)", ('sports ball', )),
        ('classes=[traffic light, fire hydrant]',
         ['traffic light', 'fire hydrant']),
        ('classes=traffic light,fire hydrant',
         ['traffic light', 'fire hydrant']),
        ('scale=(1333, 800)', (1333, 800)),
        ('x=[(1, 2), [a b, c], d]', [(1, 2), ['a b', 'c'], 'd']),
        ('x=[]', []),
        ('x=[1, 2, ]', [1, 2]),
        ('x= 12 ', 12),
        ('x=0.5', 0.5),
        ('x=None', None),
        ('x=True', True),
        ('x=a=b', 'a=b'),
        ('x=', ''),
    ])
def test_cfg_options_keep_a_value_as_typed(option, value):
    parsed = parse_cfg_options([option])
    assert parsed == {option.split('=')[0].strip('"'): value}
    assert type(parsed.popitem()[1]) is type(value)  # a tuple stays one


@pytest.mark.parametrize('value', [
    '[a,b]', 'a,b', '(1,2)', '[(1,2,3),[a,b],c]', '((1,2),(3,4))', '1,2,3',
    '[1,2,]', '()', '[]', "'quoted'", '"[a,b]"', '1e-3', 'false', 'None',
    '/data/coco/', 'x=y'
])
def test_cfg_options_split_as_mmengine_does(value):
    """Without spaces, every value parses as mmengine's own DictAction
    parses it."""
    assert parse_cfg_options([f'key={value}'])['key'] == \
        DictAction._parse_iterable(value)


@pytest.mark.parametrize('option', ['metainfo.classes=(a,(b)', 'x=a],b'])
def test_unpaired_brackets_are_one_line(option):
    with pytest.raises(UserError) as info:
        parse_cfg_options([option])
    assert str(info.value) == (
        f'--cfg-options {option}: its brackets do not pair up; write a list '
        'as key=[a,b] or a tuple as key=(a,b), quoted for the shell')


def test_the_typed_root_moves_every_dataset_path(repo):
    root = '/data/my coco é/'
    cfg = load_config(
        str(repo / HTC),
        parse_cfg_options([
            f'data_root={root}',
            "train_dataloader.dataset.metainfo.classes=('sports ball', 'tv')"
        ]))
    assert cfg.train_dataloader.dataset.data_root == root
    assert cfg.val_evaluator.ann_file == \
        f'{root}annotations/instances_val2017.json'
    assert cfg.train_dataloader.dataset.metainfo.classes == ('sports ball',
                                                             'tv')


def test_check_data_accepts_demo_data_and_names_missing_parts(
        repo, tiny_demo_data, tmp_path):
    cfg = load_config(str(repo / HTC), {'data_root': str(tiny_demo_data)})
    check_data(cfg, ['train_dataloader', 'val_dataloader'])

    (tmp_path / 'annotations').mkdir()
    (tmp_path / 'annotations' / 'instances_train2017.json').write_text('{}')
    cfg = load_config(str(repo / HTC), {'data_root': str(tmp_path)})
    with pytest.raises(UserError) as info:
        check_data(cfg, ['train_dataloader'])
    assert f'folder not found: {tmp_path}/train2017/' in str(info.value)
    assert '--cfg-options data_root=' in str(info.value)


def test_ap_table_rows_per_task():
    metrics = {
        f'coco/{task}_{key}': value
        for task, value in (('bbox', 0.5), ('segm', 0.25))
        for key in ('mAP', 'mAP_50', 'mAP_75', 'mAP_s', 'mAP_m', 'mAP_l')
    }
    lines = ap_table(metrics).splitlines()
    assert lines[0] == '| task | AP | AP50 | AP75 | APs | APm | APl |'
    assert lines[2] == '| bbox | ' + ' | '.join(['0.500'] * 6) + ' |'
    assert lines[3].startswith('| segm | 0.250')
    # No segm row without segm metrics; COCO's -1 (no objects) shows as -.
    metrics = {k: v for k, v in metrics.items() if 'bbox' in k}
    metrics['coco/bbox_mAP_l'] = -1.0
    lines = ap_table(metrics).splitlines()
    assert len(lines) == 3
    assert lines[2] == '| bbox | ' + ' | '.join(['0.500'] * 5) + ' | – |'


FREEZE_SCRIPT = '''
import gc
from projects.res2net.engine.cli import run_tool
before = gc.get_freeze_count()
run_tool(lambda: print(before, gc.get_freeze_count()))
'''


def test_a_tool_s_imports_are_frozen_before_its_main(tmp_path):
    """In a tool's process (here one forked from the fork server, with
    torch and mmdet imported), run_tool exempts what is there from the
    cyclic garbage collector before the tool's ``main`` runs."""
    script, log = tmp_path / 'tool.py', tmp_path / 'out.log'
    script.write_text(FREEZE_SCRIPT)
    assert run_script(str(script), [], log=str(log)) == 0, log.read_text()
    before, during = map(int, log.read_text().split())
    assert before == 0 and during > 100_000  # torch's, mmengine's, mmdet's


def test_a_process_that_froze_objects_itself_keeps_its_choice():
    """A test process (tests/conftest.py freezes after collection) runs
    tools in itself: run_tool freezes nothing more there, or every test's
    objects alive at a tool run would be kept for the session."""
    frozen = gc.get_freeze_count()
    assert frozen > 0
    kept = []  # objects made since the conftest froze
    run_tool(lambda: kept.append(gc.get_freeze_count()))
    assert kept == [frozen] and gc.get_freeze_count() == frozen


def test_run_tool_prints_one_line_and_exits_2(capsys):

    def main():
        raise UserError('thing not found: x; do y')

    with pytest.raises(SystemExit) as info:
        run_tool(main)
    assert info.value.code == 2
    assert capsys.readouterr().err == 'error: thing not found: x; do y\n'
