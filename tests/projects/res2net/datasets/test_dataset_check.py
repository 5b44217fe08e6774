# Copyright (c) Res2Net-MMDet contributors. All rights reserved.
"""projects/res2net/datasets/dataset_check.py on damaged copies of the demo
data, and beside mmdet's own CocoDataset on a file of edge cases."""
import json
import re
import shutil
from collections import Counter

import pytest
from mmdet.datasets import CocoDataset
from mmdet.registry import DATASETS
from mmengine.config import Config

from projects.res2net.datasets.dataset_check import (EMPTY, NOTHING_KEPT,
                                                     SKIPS, check_config,
                                                     check_num_classes,
                                                     check_split,
                                                     format_report,
                                                     head_class_counts,
                                                     skipped_lines)
from projects.res2net.engine.cli import load_config
from projects.res2net.errors import UserError

HTC = 'configs/htc_r2_101_fpn_20e.py'
TRAIN = 'annotations/instances_train2017.json'


@pytest.fixture
def data(tiny_demo_data, tmp_path):
    """A copy of the tiny demo data, to damage."""
    return shutil.copytree(tiny_demo_data, tmp_path / 'data')


def _edit(path, change) -> None:
    annotations = json.loads(path.read_text())
    change(annotations)
    path.write_text(json.dumps(annotations))


def _config(repo, data):
    return load_config(str(repo / HTC), {'data_root': f'{data}/'})


def test_the_demo_data_is_clean(repo, data):
    reports = check_config(
        _config(repo, data), ['train_dataloader', 'val_dataloader'],
        images=True)
    assert [r.problems for r in reports] == [{}, {}]
    train = reports[0]
    assert (train.images, train.images_kept) == (2, 2)
    raw = json.loads((data / TRAIN).read_text())
    assert sum(train.instances.values()) == len(raw['annotations'])
    assert set(train.instances) <= {'sports ball', 'kite', 'tv'}
    assert sum(train.sizes.values()) == len(raw['annotations'])
    assert 'problems: none' in format_report(train)


def test_skips_are_counted_with_their_ids(repo, data):

    def damage(annotations):
        first, second = annotations['annotations'][:2]
        first['bbox'][2] = -4  # negative width
        second['bbox'][:2] = [500, 500]  # wholly outside a 128 image
        extra = dict(second, id=999, image_id=77)  # no such image
        other = dict(second, id=998, category_id=1, bbox=[0, 0, 8, 8])
        annotations['annotations'] += [extra, other]

    _edit(data / TRAIN, damage)
    config = _config(repo, data)
    # The demo's three classes: category 1 (person) is not among them.
    config.train_dataloader.dataset.metainfo = dict(
        classes=('sports ball', 'kite', 'tv'))
    report, = check_config(config, ['train_dataloader'])
    assert report.problems == {
        'empty_box': [1],
        'outside_image': [2],
        'unknown_image': [999],
        'other_category': [998],
    }
    lines = skipped_lines([report])
    assert f'train_dataloader: {data / TRAIN}: 1 x box of zero or negative ' \
        'size (mmdet skips it) (ids 1)' in lines
    assert any('wholly outside its image' in line for line in lines)
    assert 'skip: 1 x annotation of an image id not in images (never read) ' \
        '(ids 999)' in format_report(report)


def _categories_json() -> dict:
    """Two of the demo's images, annotated by hand: one annotation mmdet
    keeps (sports ball), three of category ids the file does not define,
    three of categories a class list of sports ball alone leaves out."""
    images = [
        dict(id=i, file_name=f'{i:012d}.png', width=128, height=128)
        for i in (1, 2)
    ]
    categories = [
        dict(id=1, name='person'),
        dict(id=18, name='dog'),
        dict(id=37, name='sports ball')
    ]
    annotations = [
        dict(id=11, image_id=1, category_id=37),
        dict(id=12, image_id=1, category_id=99),
        dict(id=13, image_id=2, category_id=99),
        dict(id=14, image_id=2, category_id=7),
        dict(id=15, image_id=2, category_id=1),
        dict(id=16, image_id=1, category_id=1),
        dict(id=17, image_id=1, category_id=18),
    ]
    for ann in annotations:
        ann.update(bbox=[10, 10, 20, 20], area=400, iscrowd=0)
    return dict(images=images, annotations=annotations, categories=categories)


UNKNOWN = ("3 x category id not in the file's categories (skipped) (ids "
           '12, 13, 14; category ids 99, 7)')
LEFT_OUT = ("3 x category the config's classes leave out (skipped) (ids 15, "
            '16, 17; categories person (2), dog (1))')


def test_every_annotation_mmdet_drops_is_named(repo, data):
    """Unknown category ids and categories the class list leaves out: each
    annotation named, as mmdet's CocoDataset drops them."""
    (data / TRAIN).write_text(json.dumps(_categories_json()))
    config = _config(repo, data)
    dataset = config.train_dataloader.dataset
    dataset.metainfo = dict(classes=('sports ball', ))
    report, = check_config(config, ['train_dataloader'])
    assert report.problems == {
        'unknown_category': [12, 13, 14],
        'other_category': [15, 16, 17],
    }
    assert report.describe('unknown_category') == UNKNOWN
    assert report.describe('other_category') == LEFT_OUT
    assert skipped_lines([report]) == [
        f'train_dataloader: {data / TRAIN}: {UNKNOWN}',
        f'train_dataloader: {data / TRAIN}: {LEFT_OUT}',
    ]
    assert report.instances == {'sports ball': 1}
    # mmdet keeps exactly the one the report counts.
    coco = CocoDataset(
        data_root=dataset.data_root,
        ann_file=dataset.ann_file,
        data_prefix=dict(img=dataset.data_prefix.img),
        metainfo=dataset.metainfo,
        pipeline=[])
    kept = [
        inst for i in range(len(coco))
        for inst in coco.get_data_info(i)['instances']
    ]
    assert len(kept) == sum(report.instances.values())

    # Every category the file defines: only the unknown ids are dropped.
    dataset.metainfo = dict(classes=('person', 'dog', 'sports ball'))
    report, = check_config(config, ['train_dataloader'])
    assert list(report.problems) == ['unknown_category']
    assert report.instances == {'person': 2, 'dog': 1, 'sports ball': 1}


def test_many_unknown_categories_show_the_first_few(repo, data):
    coco = _categories_json()
    coco['annotations'] = [
        dict(coco['annotations'][0], id=100 + i, category_id=200 + i)
        for i in range(7)
    ]
    (data / TRAIN).write_text(json.dumps(coco))
    dataset = _config(repo, data).train_dataloader.dataset
    dataset.metainfo = dict(classes=('sports ball', ))
    report = check_split(dataset, 'train_dataloader')
    assert report.describe('unknown_category').endswith(
        '(ids 100, 101, 102, 103, 104, ...; category ids 200, 201, 202, 203,'
        ' 204, ...)')
    assert "skip: 7 x category id not in the file's" in format_report(report)


def test_stops(repo, data):
    config = _config(repo, data)
    (data / 'train2017' / '000000000002.png').unlink()
    with pytest.raises(UserError) as err:
        check_config(config, ['train_dataloader'])
    assert str(err.value) == (
        f'train_dataloader: {data / TRAIN}: 1 x image file missing (ids 2); '
        'remove those entries or put the files in place (python '
        'tools/misc/check_dataset.py CONFIG lists every problem)')

    # HTC's semantic maps are checked too.
    shutil.copy(data / 'train2017' / '000000000001.png',
                data / 'train2017' / '000000000002.png')
    (data / 'stuffthingmaps' / 'train2017' / '000000000001.png').unlink()
    with pytest.raises(UserError, match=r'1 x semantic map missing \(ids 1\)'):
        check_config(config, ['train_dataloader'])


def test_an_unreadable_image_is_found_by_decoding(repo, data):
    (data / 'val2017' / '000000000001.png').write_bytes(b'not a png')
    config = _config(repo, data)
    dataset = config.val_dataloader.dataset
    assert check_split(dataset, 'val_dataloader').problems == {}
    assert check_split(
        dataset, 'val_dataloader', images=True).problems == {
            'unreadable_image': [1]
        }


@pytest.mark.parametrize('text, says', [
    ('{"images": [', 'is not valid JSON (line 1, column 13'),
    ('[1, 2]', 'is not in COCO format (no images, annotations, categories'),
    ('{"images": [], "annotations": []}', 'is not in COCO format (no '
     'categories list)'),
    ('{"images": [{"id": 1}], "annotations": [], "categories": []}',
     'images[0] has no file_name, width, height'),
])
def test_files_that_are_not_coco(repo, data, text, says):
    (data / TRAIN).write_text(text)
    with pytest.raises(
            UserError, match='annotation file .*' + re.escape(says)):
        check_config(_config(repo, data), ['train_dataloader'])


def test_classes_and_an_empty_result(repo, data):
    config = _config(repo, data)
    config.train_dataloader.dataset.metainfo = dict(classes=('unicorn', 'tv'))
    with pytest.raises(UserError) as err:
        check_config(config, ['train_dataloader'])
    assert "1 of the config's 2 classes are not categories of" in str(
        err.value)
    assert '(unicorn); set the dataset\'s metainfo=dict(classes=(...))' in str(
        err.value)

    config.train_dataloader.dataset.metainfo = dict(classes=('person', ))
    with pytest.raises(
            UserError, match="no image is left after mmdet's "
            'filter'):
        check_config(config, ['train_dataloader'])


def test_nothing_left_after_the_filter_is_a_stop_of_the_report(repo, data):
    """The report decides it once: the quick check raises it, the summary
    marks it STOP, and it counts among the report's stops."""
    config = _config(repo, data)
    config.train_dataloader.dataset.metainfo = dict(classes=('person', ))
    report = check_split(config.train_dataloader.dataset, 'train_dataloader')
    assert report.images_kept == 0 and report.nothing_kept
    assert report.stops() == [NOTHING_KEPT]
    assert report.describe(NOTHING_KEPT) == EMPTY
    summary = format_report(report)
    assert f'  STOP: {EMPTY}' in summary
    assert 'problems: none' not in summary
    with pytest.raises(UserError) as err:
        check_config(config, ['train_dataloader'])
    assert str(err.value) == (f'train_dataloader: {data / TRAIN}: {EMPTY}; '
                              'check the classes and the annotations')

    # Found by id first, then the split as a whole: raised in that order.
    (data / 'train2017' / '000000000002.png').unlink()
    report = check_split(config.train_dataloader.dataset, 'train_dataloader')
    assert report.stops() == ['missing_image', NOTHING_KEPT]
    lines = format_report(report).splitlines()
    assert lines[4:6] == [
        f'  STOP: {EMPTY}', '  STOP: 1 x image file missing (ids 2)'
    ]
    assert lines[6].startswith('  skip: ') and \
        "category the config's classes leave out" in lines[6]


def test_a_custom_class_list_needs_every_head_to_match(repo):
    """HTC: three cascade box heads, three mask heads and the semantic head
    are named; the RPN's one class is not a dataset's class count."""
    cfg = Config.fromfile(str(repo / 'configs' / 'htc_r2_101_fpn_20e.py'))
    cfg.train_dataloader.dataset.metainfo = dict(classes=('a', 'b', 'c'))
    with pytest.raises(UserError) as info:
        check_num_classes(cfg, ['train_dataloader'])
    message = str(info.value)
    assert '\n' not in message
    assert message.startswith(
        'train_dataloader: metainfo.classes names 3 classes, but '
        'model.roi_head.bbox_head.0.num_classes is 80; ')
    keys = [
        part.split('=')[0] for part in message.split()
        if part.endswith('num_classes=3')
    ]
    assert keys == [
        f'model.roi_head.bbox_head.{i}.num_classes' for i in range(3)
    ] + [f'model.roi_head.mask_head.{i}.num_classes'
         for i in range(3)] + ['model.roi_head.semantic_head.num_classes']
    assert 'rpn_head' not in message

    # Heads that match, or no class list of its own: nothing to say.
    for path, _ in head_class_counts(cfg.model):
        cfg.merge_from_dict({path: 3})
    check_num_classes(cfg, ['train_dataloader'])
    del cfg.train_dataloader.dataset.metainfo
    check_num_classes(cfg, ['train_dataloader'])


# Against mmdet's own CocoDataset: dataset_check.py restates its rules
# (parse_data_info's kept annotations, filter_data's kept images), so both
# read one file of every edge case and must keep the same.
EDGE_IMAGES = {  # id: (width, height); 4 is below min_size=32
    1: (100, 100),
    2: (100, 100),
    3: (100, 100),
    4: (20, 100),
    5: (100, 100),
    6: (100, 100),
    7: (100, 100),
    8: (100, 100),
    9: (100, 100)
}
# (id, image, category, bbox, extra): each box at a place of its own, which
# names it among mmdet's instances. Categories: 1 a, 2 b, 3 c; 99 unknown.
EDGE_ANNOTATIONS = [
    (1, 1, 1, [1, 1, 10, 10], {}),  # kept
    (2, 1, 2, [2, 2, 50, 50], {}),  # kept
    (3, 2, 1, [3, 3, 10, 10], dict(iscrowd=1)),  # crowd: the image kept
    # 3: no annotation at all (filter_empty_gt)
    (4, 4, 1, [1, 4, 10, 10], {}),  # on an image below min_size
    (5, 5, 3, [5, 5, 10, 10], {}),  # c only: left out by a class subset
    (6, 6, 99, [6, 6, 10, 10], {}),  # an unknown category only
    (7, 7, 1, [7, 7, 0, 10], {}),  # zero width
    (8, 7, 1, [8, 8, 10, 10], dict(area=0)),  # zero area
    (9, 7, 2, [9, 9, 0.5, 10], {}),  # under a pixel wide
    (10, 8, 2, [500, 10, 10, 10], {}),  # wholly outside its image
    (11, 8, 2, [95, 11, 10, 10], {}),  # partly outside: kept
    (12, 9, 1, [12, 12, 10, 10], dict(ignore=1)),  # mmdet's ignore flag
    (13, 77, 1, [13, 13, 10, 10], {}),  # no such image: never read
    (14, 9, 3, [14, 14, 10, 10], dict(iscrowd=1)),  # crowd, left out
]


def _edge_coco() -> dict:
    images = [
        dict(id=i, file_name=f'{i}.png', width=w, height=h)
        for i, (w, h) in EDGE_IMAGES.items()
    ]
    annotations = [
        dict(
            dict(
                id=i,
                image_id=image,
                category_id=category,
                bbox=bbox,
                area=bbox[2] * bbox[3],
                iscrowd=0,
                segmentation=[]), **extra)
        for i, image, category, bbox, extra in EDGE_ANNOTATIONS
    ]
    categories = [
        dict(id=i, name=n) for i, n in ((1, 'a'), (2, 'b'), (3, 'c'))
    ]
    return dict(images=images, annotations=annotations, categories=categories)


@pytest.fixture(scope='module')
def coco_train_dataset(repo):
    """A config's training dataset as mmdet's COCO base sets it
    (``filter_cfg=dict(filter_empty_gt=True, min_size=32)``)."""
    cfg = Config.fromfile(
        str(repo / 'configs' / 'faster_rcnn_r2_101_fpn_2x.py'))
    return cfg.train_dataloader.dataset.to_dict()


def _kept_by_mmdet(dataset: dict, coco: dict):
    """mmdet's CocoDataset on ``dataset``: how many images its filter_cfg
    keeps, and, by annotation id, the instances it makes of every image's
    annotations (with their category's name and ignore flag)."""
    built = DATASETS.build(dict(dataset, pipeline=[], lazy_init=True))
    ann_id = {
        (a['image_id'], tuple(a['bbox'][:2])): a['id']
        for a in coco['annotations']
    }
    category = {c['id']: c['name'] for c in coco['categories']}
    instances = {}
    for info in built.load_data_list():  # parse_data_info's, unfiltered
        for inst in info['instances']:
            key = (info['img_id'], tuple(inst['bbox'][:2]))
            # mmdet 3.3 numbers the labels in the file's category order,
            # whatever the order of metainfo.classes: its cat_ids name them.
            instances[ann_id[key]] = (
                category[built.cat_ids[inst['bbox_label']]],
                inst['ignore_flag'])
    built.full_init()  # load_data_list again, then filter_data
    return len(built), instances


@pytest.mark.parametrize(
    'change', [
        dict(metainfo=dict(classes=('a', 'b'))),
        dict(metainfo=dict(classes=('a', 'b', 'c'))),
        dict(metainfo=dict(classes=('a', 'b')), filter_cfg=None),
        dict(
            metainfo=dict(classes=('a', )),
            filter_cfg=dict(filter_empty_gt=False, min_size=32)),
        dict(
            metainfo=dict(classes=('a', 'b')),
            filter_cfg=dict(filter_empty_gt=True)),
        dict(metainfo=dict(classes=('a', 'b')), test_mode=True),
    ],
    ids=['subset', 'all', 'no-filter', 'sizes-only', 'empty-only', 'test'])
def test_it_keeps_what_mmdet_keeps(coco_train_dataset, tmp_path, change):
    """Crowd boxes, images without annotations, small images, a class
    subset, unknown categories, boxes mmdet drops: the report's kept images
    and instances are those of mmdet's CocoDataset on the same file."""
    coco = _edge_coco()
    (tmp_path / 'ann.json').write_text(json.dumps(coco))
    (tmp_path / 'img').mkdir()
    for image in coco['images']:  # present, never decoded
        (tmp_path / 'img' / image['file_name']).touch()
    dataset = dict(
        coco_train_dataset,
        data_root=str(tmp_path),
        ann_file='ann.json',
        data_prefix=dict(img='img/'),
        **change)
    images_kept, instances = _kept_by_mmdet(dataset, coco)
    report = check_split(dataset, 'train_dataloader')

    assert report.images_kept == images_kept
    trained = Counter(name for name, ignore in instances.values()
                      if not ignore)
    assert report.instances == trained
    # The annotations each drops of the images it reads: ours, each named
    # as a skip, and the ignore-flagged ones (the user's own choice).
    read = {
        a['id']
        for a in coco['annotations'] if a['image_id'] in EDGE_IMAGES
    }
    ignored = {a['id'] for a in coco['annotations'] if a.get('ignore')}
    skipped = {
        i
        for kind, ids in report.problems.items()
        if kind not in ('partly_outside', 'unknown_image') for i in ids
    }
    assert read - set(instances) == skipped | ignored
    assert report.problems['unknown_image'] == [13]
    assert set(report.problems) <= set(SKIPS)


def _unread_images(dataset: dict, tmp_path, coco: dict, classes) -> dict:
    """``dataset`` on ``coco``, written to ``tmp_path``, with ``classes``;
    for checks that stop before any image is looked for."""
    (tmp_path / 'ann.json').write_text(json.dumps(coco))
    return dict(
        dataset,
        data_root=str(tmp_path),
        ann_file='ann.json',
        data_prefix=dict(img=''),
        metainfo=dict(classes=classes))


@pytest.mark.parametrize('field, mmdet_error', [('area', KeyError),
                                                ('id', AssertionError)])
def test_what_mmdet_refuses_stops_in_one_line(coco_train_dataset, tmp_path,
                                              field, mmdet_error):
    """An annotation without ``area``, or an annotation id used twice: mmdet
    raises (a KeyError, an assertion) where ours names the entry."""
    coco = _edge_coco()
    if field == 'area':
        del coco['annotations'][1]['area']
        says = 'annotations[1] has no area'
    else:
        coco['annotations'][1]['id'] = coco['annotations'][0]['id']
        says = 'annotation id 1 is used twice'
    dataset = _unread_images(coco_train_dataset, tmp_path, coco, ('a', 'b'))
    with pytest.raises(mmdet_error):
        _kept_by_mmdet(dataset, coco)
    with pytest.raises(UserError, match=re.escape(says)):
        check_split(dataset, 'train_dataloader')


def test_classes_out_of_the_file_s_order_stop(coco_train_dataset, tmp_path):
    """mmdet numbers the labels in the file's order of the categories,
    whatever the order of ``metainfo.classes``: with the classes ('b', 'a')
    label 0, which names 'b', is given to the boxes of 'a'. Ours stops in
    one line naming the order to write."""
    coco = _edge_coco()
    dataset = _unread_images(coco_train_dataset, tmp_path, coco, ('b', 'a'))
    built = DATASETS.build(dict(dataset, pipeline=[], lazy_init=True))
    built.load_data_list()
    category = {c['id']: c['name'] for c in coco['categories']}
    assert built.metainfo['classes'][0] == 'b'
    assert category[built.cat_ids[0]] == 'a'  # label 0: the boxes of 'a'

    with pytest.raises(UserError) as err:
        check_split(dataset, 'train_dataloader')
    assert str(err.value) == (
        f"train_dataloader (data_root={str(tmp_path)!r}): the config's "
        "classes are not in the order of the annotation file's categories "
        "('a' comes before 'b' there), and mmdet numbers the labels in the "
        "file's order, so each label would name another class; list "
        "metainfo classes in the file's order: ('a', 'b')")
