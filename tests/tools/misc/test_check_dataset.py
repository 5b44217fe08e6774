# Copyright (c) Res2Net-MMDet contributors. All rights reserved.
"""tools/misc/check_dataset.py on the demo data and a damaged copy."""
import json
import re
import shutil

TOOL = 'misc/check_dataset.py'
HTC = 'configs/htc_r2_101_fpn_20e.py'


def test_a_clean_dataset(call_tool, tiny_demo_data):
    result = call_tool(TOOL, HTC, '--images', '--cfg-options',
                       f'data_root={tiny_demo_data}/')
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert out.count('problems: none') == 2
    assert 'images: 2 (2 kept by the config\'s filter)' in out
    assert re.search(
        r'sizes \(COCO area ranges\): small \d+, medium \d+, '
        r'large \d+', out)
    assert 'test_dataloader: the same dataset as val_dataloader' in out
    assert out.strip().endswith('no problem stops training')


def test_a_damaged_copy_is_reported_problem_by_problem(call_tool,
                                                       tiny_demo_data,
                                                       tmp_path, user_error):
    data = shutil.copytree(tiny_demo_data, tmp_path / 'data')
    ann_file = data / 'annotations' / 'instances_train2017.json'
    annotations = json.loads(ann_file.read_text())
    ids = [a['id'] for a in annotations['annotations']]
    for ann in annotations['annotations'][:2]:
        ann['bbox'][3] = 0  # zero height
    ann_file.write_text(json.dumps(annotations))
    (data / 'train2017' / '000000000001.png').unlink()
    (data / 'stuffthingmaps' / 'train2017' / '000000000002.png').unlink()
    (data / 'val2017' / '000000000002.png').write_bytes(b'\x89PNG broken')

    result = call_tool(TOOL, HTC, '--images', '--splits', 'train', 'val',
                       '--cfg-options', f'data_root={data}/')
    user_error(result, '3 problem(s) marked STOP above would stop training')
    out = result.stdout
    assert 'STOP: 1 x image file missing (ids 1)' in out
    assert 'STOP: 1 x semantic map missing (ids 2)' in out
    assert 'STOP: 1 x image file unreadable (ids 2)' in out
    assert ('skip: 2 x box of zero or negative size (mmdet skips it) '
            f'(ids {ids[0]}, {ids[1]})') in out
    assert 'test_dataloader' not in out  # not asked for


def test_annotations_mmdet_drops_for_their_category_are_named(
        call_tool, tiny_demo_data, tmp_path):
    """Category ids the file does not define, and categories the class list
    leaves out, each with the annotations it drops; the class names, with
    their spaces, as --cfg-options took them."""
    data = shutil.copytree(tiny_demo_data, tmp_path / 'data')
    ann_file = data / 'annotations' / 'instances_train2017.json'
    annotations = json.loads(ann_file.read_text())
    first = annotations['annotations'][0]
    annotations['annotations'] += [
        dict(first, id=901, category_id=999),
        dict(first, id=902, category_id=998),
    ]
    ann_file.write_text(json.dumps(annotations))
    name = {c['id']: c['name'] for c in annotations['categories']}
    used = [name[a['category_id']] for a in annotations['annotations'][:-2]]
    # The class list: every category the annotations use but the last.
    classes, left_out = sorted(set(used))[:-1], sorted(set(used))[-1]
    dropped = [
        a['id'] for a in annotations['annotations'][:-2]
        if name[a['category_id']] == left_out
    ]
    assert classes and len(dropped) <= 5, 'the tiny data changed'

    result = call_tool(
        TOOL, HTC, '--splits', 'train', '--cfg-options', f'data_root={data}/',
        'train_dataloader.dataset.metainfo.classes=(' +
        ', '.join(f"'{c}'" for c in classes) + ',)')
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert ("skip: 2 x category id not in the file's categories (skipped) "
            '(ids 901, 902; category ids 999, 998)') in out
    assert ("skip: {} x category the config's classes leave out (skipped) "
            '(ids {}; categories {} ({}))').format(
                len(dropped), ', '.join(map(str, dropped)), left_out,
                len(dropped)) in out
    counted = next(line for line in out.splitlines() if 'instances:' in line)
    assert left_out not in counted
    assert all(f'{c} ' in counted for c in classes)
