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
