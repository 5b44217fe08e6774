# Copyright (c) Res2Net-MMDet contributors. All rights reserved.
"""projects/res2net/datasets/demo_data.py: the data, its annotations, its
checks. Its command line is tests/tools/misc/test_generate_demo_data.py."""
import json
import os
import os.path as osp
import subprocess
import sys

import cv2
import numpy as np
import pytest
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from projects.res2net.datasets import demo_data
from projects.res2net.datasets.demo_data import (COCO_CATEGORIES, DEMO_SHAPES,
                                                 MANIFEST_NAME,
                                                 generate_demo_dataset)

SPLITS = ('train2017', 'val2017')
MISSING_COCO_IDS = {12, 26, 29, 30, 45, 66, 68, 69, 71, 83}
SMALL = dict(num_train=12, num_val=6, image_size=96, seed=3)

# pycocotools' decode warns about numpy 2's ``__array__(copy=...)`` protocol
# on every call (COCO.annToMask); irrelevant to what is tested here.
pytestmark = pytest.mark.filterwarnings(
    'ignore:__array__ implementation:DeprecationWarning')


def _all_files(root):
    """Relative path -> absolute path of every file under ``root``."""
    files = {}
    for dirpath, _, filenames in os.walk(root):
        for filename in filenames:
            path = osp.join(dirpath, filename)
            files[osp.relpath(path, root)] = path
    return files


def _mtimes(root):
    stats = {
        rel: os.stat(path).st_mtime_ns
        for rel, path in _all_files(root).items()
    }
    stats['.'] = os.stat(root).st_mtime_ns
    return stats


@pytest.fixture(scope='module')
def dataset(tmp_path_factory):
    """A moderately sized dataset shared by the read-only checks."""
    out = str(tmp_path_factory.mktemp('shared') / 'demo')
    summary = generate_demo_dataset(
        out, num_train=40, num_val=8, image_size=128, seed=0)
    return out, summary


def test_constants():
    assert len(COCO_CATEGORIES) == 80
    ids = [cat['id'] for cat in COCO_CATEGORIES]
    assert ids == sorted(set(range(1, 91)) - MISSING_COCO_IDS)
    names = [cat['name'] for cat in COCO_CATEGORIES]
    assert names[0] == 'person' and names[-1] == 'toothbrush'
    assert len(set(names)) == 80
    by_name = {cat['name']: cat for cat in COCO_CATEGORIES}
    assert by_name['sports ball']['id'] == 37
    assert by_name['kite']['id'] == 38
    assert by_name['tv']['id'] == 72
    assert by_name['tv']['supercategory'] == 'electronic'
    assert dict(DEMO_SHAPES) == {
        'sports ball': 'disc',
        'kite': 'triangle',
        'tv': 'rectangle'
    }


def test_module_import_is_cheap():
    # Load the file itself, not through ``projects.res2net`` whose
    # ``__init__`` registers the backbone (torch, mmcv, mmdet) on purpose.
    code = ('import importlib.util, sys; '
            "spec = importlib.util.spec_from_file_location('demo_data', "
            f'{demo_data.__file__!r}); '
            'spec.loader.exec_module(importlib.util.module_from_spec(spec)); '
            "print(sorted(m for m in ('torch', 'mmdet', 'mmcv', 'mmengine') "
            'if m in sys.modules))')
    proc = subprocess.run([sys.executable, '-c', code],
                          capture_output=True,
                          text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == '[]'


def test_layout_and_summary(dataset):
    out, summary = dataset
    assert summary['generated'] and summary['status'] == 'generated'
    assert summary['out_dir'] == out
    assert summary['params'] == dict(
        num_train=40, num_val=8, image_size=128, seed=0)
    assert osp.isfile(osp.join(out, MANIFEST_NAME))
    for split, folder, num in (('train', 'train2017', 40), ('val', 'val2017',
                                                            8)):
        stats = summary['splits'][split]
        assert stats['images'] == num
        assert stats['img_dir'] == osp.join(out, folder)
        assert stats['seg_dir'] == osp.join(out, 'stuffthingmaps', folder)
        assert stats['ann_file'] == osp.join(out, 'annotations',
                                             f'instances_{folder}.json')
        expected_files = [f'{i:012d}.png' for i in range(1, num + 1)]
        assert sorted(os.listdir(stats['img_dir'])) == expected_files
        assert sorted(os.listdir(stats['seg_dir'])) == sorted(
            os.listdir(stats['img_dir']))
        assert set(stats['per_category']) == set(DEMO_SHAPES)
        assert sum(stats['per_category'].values()) == stats['instances']
    # No temporary siblings are left behind.
    assert os.listdir(osp.dirname(out)) == ['demo']


def test_coco_annotations(dataset):
    out, summary = dataset
    for split, folder in (('train', 'train2017'), ('val', 'val2017')):
        coco = COCO(osp.join(out, 'annotations', f'instances_{folder}.json'))
        assert len(coco.cats) == 80
        assert sorted(coco.getCatIds()) == [c['id'] for c in COCO_CATEGORIES]
        assert coco.loadCats([37])[0]['name'] == 'sports ball'
        demo_ids = set(coco.getCatIds(catNms=list(DEMO_SHAPES)))
        assert len(demo_ids) == 3
        stats = summary['splits'][split]
        assert sorted(coco.getImgIds()) == list(range(1, stats['images'] + 1))
        assert sorted(coco.getAnnIds()) == list(
            range(1, stats['instances'] + 1))
        for img_id in coco.getImgIds():
            info = coco.loadImgs([img_id])[0]
            h, w = info['height'], info['width']
            assert (h, w) == (128, 128)
            assert info['file_name'] == f'{img_id:012d}.png'
            image = cv2.imread(
                osp.join(out, folder, info['file_name']), cv2.IMREAD_UNCHANGED)
            assert image.shape == (h, w, 3) and image.dtype == np.uint8
            semantic = cv2.imread(
                osp.join(out, 'stuffthingmaps', folder, info['file_name']),
                cv2.IMREAD_UNCHANGED)
            assert semantic.shape == (h, w) and semantic.dtype == np.uint8

            anns = coco.loadAnns(coco.getAnnIds(imgIds=[img_id]))
            assert 1 <= len(anns) <= 4
            expected = np.full((h, w), 255, dtype=np.uint8)
            union = np.zeros((h, w), dtype=bool)
            for ann in anns:
                assert ann['category_id'] in demo_ids
                assert ann['iscrowd'] == 0
                assert len(ann['segmentation']) == 1
                assert len(ann['segmentation'][0]) >= 6
                x, y, bw, bh = ann['bbox']
                assert all(isinstance(v, float) for v in ann['bbox'])
                assert x >= 0 and y >= 0 and bw > 0 and bh > 0
                assert x + bw <= w and y + bh <= h
                mask = coco.annToMask(ann).astype(bool)
                ys, xs = np.nonzero(mask)
                tight = [
                    xs.min(),
                    ys.min(),
                    xs.max() + 1 - xs.min(),
                    ys.max() + 1 - ys.min()
                ]
                np.testing.assert_allclose(ann['bbox'], tight, atol=1)
                assert ann['area'] == mask.sum()
                assert ann['area'] == mask_utils.area(coco.annToRLE(ann))
                # Instances never overlap.
                assert not (union & mask).any()
                union |= mask
                expected[mask] = ann['category_id'] - 1
                # The drawn shape is exactly the mask: one solid colour.
                assert len(np.unique(image[mask], axis=0)) == 1
            np.testing.assert_array_equal(semantic, expected)


def test_object_sizes_span_small_and_medium(dataset):
    out, _ = dataset
    sides = []
    for folder in SPLITS:
        with open(osp.join(out, 'annotations',
                           f'instances_{folder}.json')) as f:
            sides += [max(a['bbox'][2:]) for a in json.load(f)['annotations']]
    assert min(sides) >= 9 and max(sides) <= 64
    assert min(sides) < 32 < max(sides)
    # Both COCO area ranges are populated.
    small = [side for side in sides if side * side < 32**2]
    assert 0 < len(small) < len(sides)


def test_deterministic(tmp_path):
    summary_a = generate_demo_dataset(str(tmp_path / 'a'), **SMALL)
    summary_b = generate_demo_dataset(str(tmp_path / 'b'), **SMALL)
    assert summary_a['splits']['train']['instances'] == summary_b['splits'][
        'train']['instances']
    files_a = _all_files(str(tmp_path / 'a'))
    files_b = _all_files(str(tmp_path / 'b'))
    assert sorted(files_a) == sorted(files_b)
    assert len(files_a) == 2 * (12 + 6) + 2 + 1
    for rel, path in files_a.items():
        with open(path, 'rb') as fa, open(files_b[rel], 'rb') as fb:
            assert fa.read() == fb.read(), rel
    # A different seed gives different data.
    generate_demo_dataset(str(tmp_path / 'c'), **dict(SMALL, seed=4))
    ann_file = osp.join('annotations', 'instances_train2017.json')
    with open(osp.join(tmp_path, 'a', ann_file), 'rb') as fa:
        with open(osp.join(tmp_path, 'c', ann_file), 'rb') as fc:
            assert fa.read() != fc.read()


def test_smallest_image_size(tmp_path):
    summary = generate_demo_dataset(
        str(tmp_path / 'tiny'), num_train=10, num_val=2, image_size=32)
    coco = COCO(summary['splits']['train']['ann_file'])
    for ann in coco.loadAnns(coco.getAnnIds()):
        x, y, w, h = ann['bbox']
        assert x >= 0 and y >= 0 and x + w <= 32 and y + h <= 32
    assert len(coco.getImgIds(catIds=[])) == 10
    assert all(coco.getAnnIds(imgIds=[i]) for i in coco.getImgIds())


def test_idempotent_rerun(tmp_path):
    out = str(tmp_path / 'demo')
    generate_demo_dataset(out, **SMALL)
    before = _mtimes(out)
    summary = generate_demo_dataset(out, **SMALL)
    assert not summary['generated'] and summary['status'] == 'up-to-date'
    assert summary['splits']['val']['images'] == 6
    assert summary['splits']['train']['ann_file'] == osp.join(
        out, 'annotations', 'instances_train2017.json')
    assert _mtimes(out) == before
    assert os.listdir(str(tmp_path)) == ['demo']


def test_existing_dir_needs_force(tmp_path):
    out = str(tmp_path / 'demo')
    generate_demo_dataset(out, **SMALL)
    with pytest.raises(FileExistsError, match='force') as excinfo:
        generate_demo_dataset(out, **dict(SMALL, num_val=7))
    assert out in str(excinfo.value)
    # Refusing must not touch the existing dataset.
    assert len(os.listdir(osp.join(out, 'val2017'))) == 6

    summary = generate_demo_dataset(out, force=True, **dict(SMALL, num_val=7))
    assert summary['generated']
    assert len(os.listdir(osp.join(out, 'val2017'))) == 7
    with open(osp.join(out, MANIFEST_NAME)) as f:
        assert json.load(f)['params']['num_val'] == 7
    assert os.listdir(str(tmp_path)) == ['demo']


def test_foreign_dir_needs_force(tmp_path):
    out = tmp_path / 'demo'
    out.mkdir()
    (out / 'precious.txt').write_text('keep me')
    with pytest.raises(FileExistsError, match='force'):
        generate_demo_dataset(str(out), **SMALL)
    assert (out / 'precious.txt').read_text() == 'keep me'
    generate_demo_dataset(str(out), force=True, **SMALL)
    assert not (out / 'precious.txt').exists()
    # An empty directory holds nothing to lose: no force needed.
    empty = tmp_path / 'empty'
    empty.mkdir()
    assert generate_demo_dataset(str(empty), **SMALL)['generated']


def test_incomplete_dataset_is_not_up_to_date(tmp_path):
    out = str(tmp_path / 'demo')
    generate_demo_dataset(out, **SMALL)
    os.remove(osp.join(out, 'val2017', '000000000001.png'))
    with pytest.raises(FileExistsError):
        generate_demo_dataset(out, **SMALL)
    assert generate_demo_dataset(out, force=True, **SMALL)['generated']


@pytest.mark.parametrize('kwargs, name', [
    (dict(image_size=31), 'image_size'),
    (dict(image_size=True), 'image_size'),
    (dict(num_train=0), 'num_train'),
    (dict(num_train=2.5), 'num_train'),
    (dict(num_val=0), 'num_val'),
    (dict(seed=-1), 'seed'),
])
def test_bad_arguments(tmp_path, kwargs, name):
    out = tmp_path / 'demo'
    with pytest.raises(ValueError, match=name) as excinfo:
        generate_demo_dataset(str(out), **kwargs)
    assert '[' in str(excinfo.value)  # the allowed range is named
    assert not out.exists()
    assert os.listdir(str(tmp_path)) == []
