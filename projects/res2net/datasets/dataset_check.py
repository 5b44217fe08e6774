# Copyright (c) Res2Net-MMDet contributors. All rights reserved.
"""Check a COCO-format dataset as a config will read it.

mmdet's ``CocoDataset`` reads an annotation file and silently drops what it
cannot use (boxes of no area or outside their image, categories outside the
config's classes); a file that is not COCO-shaped, or an image that is not
on disk, surfaces as a traceback, the latter hours into training. This
module reads each split the way ``CocoDataset`` will and sorts what it finds
into two kinds:

* **stops** (:data:`STOPS`): the run cannot be what the user meant: the
  file is not JSON or not COCO-shaped (an entry without a field mmdet
  reads, an annotation id used twice: mmdet's tracebacks), a config class
  is not among the file's categories, the classes are listed in another
  order than the file's categories (mmdet would give every box another
  class's label, silently), an image or HTC semantic map is
  missing (or, with ``images=True``, unreadable), nothing is left to train
  on after mmdet's filter. :func:`check_config` raises them as one
  :class:`UserError` line.
* **skips** (:data:`SKIPS`): annotations mmdet drops by design (boxes of no
  area, category ids the file does not define, categories the config's
  classes leave out); counted, with the first few ids (and the categories
  concerned), and logged, so that a broken export is noticed.

``tools/train.py`` and ``tools/test.py`` run the fast part (no image
decoding) before the Runner starts; ``tools/misc/check_dataset.py`` runs
all of it and prints the summary.

What is kept follows mmdet 3.3's ``mmdet/datasets/coco.py`` (OpenMMLab,
Apache-2.0): ``CocoDataset.parse_data_info`` for the annotations and
``CocoDataset.filter_data`` for the images. mmdet offers no function that
counts what these drop and why, so the rules are restated here;
``tests/projects/res2net/datasets/test_dataset_check.py`` builds mmdet's own
``CocoDataset`` on the same files and checks that both keep the same images
and annotations, so that a later mmdet cannot change them unseen.
"""
import json
import os.path as osp
from collections import Counter
from dataclasses import dataclass, field
from typing import (Any, Dict, Hashable, Iterable, Iterator, List, Mapping,
                    Optional, Sequence, Tuple)

import cv2
from mmengine.config import Config

from ..engine.cli import leaf_datasets, reads_semantic_maps
from ..errors import UserError

# COCO's size ranges, by area in pixels (pycocotools' COCOeval).
SIZES = (('small', 32**2), ('medium', 96**2), ('large', float('inf')))

# Problem kinds, with what a user reads; each is a stop or a skip.
STOPS = {
    'missing_image': 'image file missing',
    'unreadable_image': 'image file unreadable',
    'missing_seg_map': 'semantic map missing',
}
SKIPS = {
    'empty_box': 'box of zero or negative size (mmdet skips it)',
    'outside_image': 'box wholly outside its image (mmdet skips it)',
    'partly_outside': 'box partly outside its image (kept)',
    'unknown_category': 'category id not in the file\'s categories (skipped)',
    'other_category': 'category the config\'s classes leave out (skipped)',
    'unknown_image': 'annotation of an image id not in images (never read)',
}
_SHOWN = 5  # ids shown per problem
# The fields CocoDataset reads from each entry of a COCO file (without
# ``area`` its parse_data_info raises a KeyError, and COCOeval needs it).
_FIELDS = {
    'images': ('id', 'file_name', 'width', 'height'),
    'annotations': ('id', 'image_id', 'category_id', 'bbox', 'area'),
    'categories': ('id', 'name'),
}
EMPTY = ("no image is left after mmdet's filter (filter_cfg: images with an "
         "annotation of the config's classes, of at least min_size)")
# The stop of a split as a whole, not of some ids: nothing to train on.
NOTHING_KEPT = 'nothing_kept'
# What to do about a stop, after the one line that names it.
_FIX = ('remove those entries or put the files in place (python '
        'tools/misc/check_dataset.py CONFIG lists every problem)')
_FIX_NOTHING_KEPT = 'check the classes and the annotations'


@dataclass
class SplitReport:
    """What one dataloader's dataset holds and what is wrong with it."""

    loader: str
    ann_file: str
    images: int = 0
    images_kept: int = 0  # after mmdet's filter_cfg, in training
    # By class name, of every image (filter_cfg drops images, not these).
    instances: Counter = field(default_factory=Counter)
    sizes: Counter = field(default_factory=Counter)  # small/medium/large
    problems: Dict[str, List] = field(default_factory=dict)
    # The categories of the skipped annotations, by kind: the unknown ids
    # (unknown_category), the names the classes leave out (other_category).
    categories: Dict[str, Counter] = field(default_factory=dict)

    def add(self,
            kind: str,
            ident: Hashable,
            category: Optional[Hashable] = None) -> None:
        self.problems.setdefault(kind, []).append(ident)
        if category is not None:
            self.categories.setdefault(kind, Counter())[category] += 1

    @property
    def nothing_kept(self) -> bool:
        """Whether mmdet's filter leaves no image to train on."""
        return self.images_kept == 0

    def stops(self) -> List[str]:
        """The kinds of problem that would stop training, in the order they
        are raised: those found by id, then :data:`NOTHING_KEPT`.

        The report decides this once, so that the quick check, the summary
        and ``check_dataset.py``'s count agree.
        """
        kinds = [k for k in self.problems if k in STOPS]
        return kinds + [NOTHING_KEPT] if self.nothing_kept else kinds

    def describe(self, kind: str) -> str:
        if kind == NOTHING_KEPT:
            return EMPTY
        ids = self.problems[kind]
        shown = ', '.join(map(str, ids[:_SHOWN]))
        more = ', ...' if len(ids) > _SHOWN else ''
        what = {**STOPS, **SKIPS}[kind]
        return f'{len(ids)} x {what} (ids {shown}{more}' + \
            self._categories(kind) + ')'

    def _categories(self, kind: str) -> str:
        """'; category ids 90, 91' (the unknown ids, in the order met), or
        '; categories person (2), dog (1)' (those the classes leave out,
        with the annotations each loses); the first few of either."""
        found = self.categories.get(kind)
        if not found:
            return ''
        if kind == 'unknown_category':
            text, items = '; category ids ', list(map(str, found))
        else:
            text, items = '; categories ', [
                f'{name} ({count})' for name, count in found.most_common()
            ]
        more = ', ...' if len(items) > _SHOWN else ''
        return text + ', '.join(items[:_SHOWN]) + more


def dataset_configs(cfg: Config,
                    loaders: Sequence[str]) -> Iterable[Tuple[str, Mapping]]:
    """``(loader, dataset config)`` of each annotated dataset the config's
    ``loaders`` read (wrapped datasets unwrapped)."""
    for loader in loaders:
        if cfg.get(loader):
            for dataset in leaf_datasets(cfg[loader]['dataset']):
                if dataset.get('ann_file'):
                    yield loader, dataset


def _classes(dataset: Mapping) -> Sequence[str]:
    """The class names the dataset config selects (mmdet's COCO's 80 when
    it names none)."""
    from mmdet.registry import DATASETS
    metainfo = dataset.get('metainfo') or {}
    if metainfo.get('classes'):
        return tuple(metainfo['classes'])
    cls = DATASETS.get(dataset.get('type', 'CocoDataset'))
    return tuple(getattr(cls, 'METAINFO', {}).get('classes', ()))


def _load(path: str, where: str) -> dict:
    fix = 'export it again as COCO instances JSON, or fix data_root'
    try:
        with open(path, encoding='utf-8') as f:
            data = json.load(f)
    except json.JSONDecodeError as err:
        raise UserError(f'{where}: annotation file {path} is not valid JSON '
                        f'(line {err.lineno}, column {err.colno}: {err.msg});'
                        f' {fix}') from err
    except UnicodeDecodeError as err:
        raise UserError(f'{where}: annotation file {path} is not text '
                        f'({err.reason}); {fix}') from err
    shape = {'images': list, 'annotations': list, 'categories': list}
    wrong = [k for k, t in shape.items() if not isinstance(data.get(k), t)] \
        if isinstance(data, dict) else list(shape)
    if wrong:
        raise UserError(f'{where}: annotation file {path} is not in COCO '
                        f'format (no {", ".join(wrong)} list); {fix}')
    for key, fields in _FIELDS.items():
        for i, entry in enumerate(data[key]):
            absent = [f for f in fields if f not in entry] \
                if isinstance(entry, dict) else list(fields)
            if absent:
                raise UserError(
                    f'{where}: annotation file {path}: {key}[{i}] has no '
                    f'{", ".join(absent)}; {fix}')
    # CocoDataset asserts unique annotation ids (ANN_ID_UNIQUE); pycocotools
    # would keep one of each for the evaluation.
    seen = set()
    for ann in data['annotations']:
        if ann['id'] in seen:
            raise UserError(
                f'{where}: annotation file {path}: annotation id '
                f'{ann["id"]!r} is used twice; give each annotation its own '
                'id (or export the file again)')
        seen.add(ann['id'])
    return data


def check_class_order(classes: Sequence[str], categories: Sequence[Mapping], *,
                      where: str) -> None:
    """Stop when the classes are not in the order of their categories in
    the annotation file.

    mmdet's ``CocoDataset`` numbers the labels in the file's order of the
    categories (``COCO.get_cat_ids(cat_names=classes)`` keeps the file's
    order), whatever the order of ``metainfo.classes``: listed in another
    order, every label names another class, and nothing fails.

    Raises:
        UserError: The classes are in another order; the line names the
            first pair out of order and the order to write.
    """
    wanted = set(classes)
    in_file = [
        name for name in dict.fromkeys(c['name'] for c in categories)
        if name in wanted
    ]
    if list(classes) == in_file:
        return
    first = next(i for i, (ours, theirs) in enumerate(zip(classes, in_file))
                 if ours != theirs)
    shown = ', '.join(repr(name) for name in in_file[:_SHOWN]) + \
        (', ...' if len(in_file) > _SHOWN else '')
    raise UserError(
        f'{where}: the config\'s classes are not in the order of the '
        f'annotation file\'s categories ({in_file[first]!r} comes before '
        f'{classes[first]!r} there), and mmdet numbers the labels in the '
        'file\'s order, so each label would name another class; list '
        f'metainfo classes in the file\'s order: ({shown})')


def check_split(dataset: Mapping,
                loader: str,
                *,
                images: bool = False) -> SplitReport:
    """Check one dataset config (``data_root``, ``ann_file``,
    ``data_prefix``, ``metainfo``, ``filter_cfg``) as mmdet reads it.

    Args:
        images: Also decode every image (slow); else only check that it is
            there.

    Raises:
        UserError: The annotation file is not JSON or not COCO-shaped, or a
            config class is missing from its categories.
    """
    root = dataset.get('data_root') or ''
    ann_file = osp.join(root, dataset['ann_file'])
    where = f'{loader} (data_root={root!r})'
    data = _load(ann_file, where)
    report = SplitReport(loader, ann_file, images=len(data['images']))

    classes = _classes(dataset)
    category = {c['id']: c['name'] for c in data['categories']}
    absent = [name for name in classes if name not in category.values()]
    if absent:
        shown = ', '.join(absent[:_SHOWN]) + \
            (', ...' if len(absent) > _SHOWN else '')
        raise UserError(
            f'{where}: {len(absent)} of the config\'s {len(classes)} classes '
            f'are not categories of {ann_file} ({shown}); set the dataset\'s '
            'metainfo=dict(classes=(...)) to the file\'s category names')
    check_class_order(classes, data['categories'], where=where)

    prefix = dataset.get('data_prefix') or {}
    img_dir = osp.join(root, prefix.get('img', ''))
    seg_dir = osp.join(root, prefix['seg']) if prefix.get(
        'seg') and reads_semantic_maps(dataset) else None
    seg_suffix = dataset.get('seg_map_suffix', '.png')
    image_of = {}
    for img in data['images']:
        image_of[img['id']] = img
        path = osp.join(img_dir, img['file_name'])
        if not osp.isfile(path):
            report.add('missing_image', img['id'])
        elif images and cv2.imread(path) is None:
            report.add('unreadable_image', img['id'])
        if seg_dir is not None:
            name = img['file_name'].rsplit('.', 1)[0] + seg_suffix
            if not osp.isfile(osp.join(seg_dir, name)):
                report.add('missing_seg_map', img['id'])

    with_class = set()
    for ann in data['annotations']:
        img = image_of.get(ann['image_id'])
        if img is None:
            report.add('unknown_image', ann['id'])
            continue
        # mmdet keeps the annotations of the classes' category ids only
        # (CocoDataset.parse_data_info), without a word about the others;
        # an image counts as annotated for filter_empty_gt (filter_data's
        # cat_img_map) with any annotation of a class, even one it drops.
        if ann['category_id'] not in category:
            report.add('unknown_category', ann['id'], ann['category_id'])
            continue
        name = category[ann['category_id']]
        if name not in classes:
            report.add('other_category', ann['id'], name)
            continue
        with_class.add(img['id'])
        x, y, w, h = ann['bbox']
        inter_w = max(0, min(x + w, img['width']) - max(x, 0))
        inter_h = max(0, min(y + h, img['height']) - max(y, 0))
        if w < 1 or h < 1 or ann['area'] <= 0:
            report.add('empty_box', ann['id'])
            continue
        if inter_w * inter_h == 0:
            report.add('outside_image', ann['id'])
            continue
        if inter_w < w or inter_h < h:
            report.add('partly_outside', ann['id'])
        if ann.get('ignore') or ann.get('iscrowd'):
            continue
        report.instances[name] += 1
        report.sizes[next(s for s, top in SIZES if ann['area'] < top)] += 1

    # CocoDataset.filter_data: nothing filtered in test mode or without a
    # filter_cfg.
    filter_cfg = dataset.get('filter_cfg') or {}
    min_size = filter_cfg.get('min_size', 0)
    test_mode = dataset.get('test_mode', False)
    report.images_kept = sum(
        1 for img in data['images']
        if (test_mode or not filter_cfg.get('filter_empty_gt')
            or img['id'] in with_class) and (
                test_mode or min(img['width'], img['height']) >= min_size))
    return report


def check_config(cfg: Config,
                 loaders: Sequence[str],
                 *,
                 images: bool = False) -> List[SplitReport]:
    """Check every dataset of the config's ``loaders`` that it uses.

    Raises:
        UserError: The first stop found: one line naming the split, the
            problem, its count and the first ids, and what to do.
    """
    reports = []
    for loader, dataset in dataset_configs(cfg, loaders):
        report = check_split(dataset, loader, images=images)
        reports.append(report)
        for kind in report.stops():
            fix = _FIX_NOTHING_KEPT if kind == NOTHING_KEPT else _FIX
            raise UserError(
                f'{loader}: {report.ann_file}: {report.describe(kind)}; {fix}')
    return reports


def head_class_counts(node: Any,
                      path: str = 'model') -> Iterator[Tuple[str, int]]:
    """Every ``num_classes`` the model config sets, with its key path as
    ``--cfg-options`` names it (``model.roi_head.bbox_head.0.num_classes``);
    the RPN's (one class: object) is not a class count of the dataset."""
    if isinstance(node, Mapping):
        for key, value in node.items():
            if key == 'num_classes' and isinstance(value, int):
                yield f'{path}.{key}', value
            elif key != 'rpn_head':
                yield from head_class_counts(value, f'{path}.{key}')
    elif isinstance(node, (list, tuple)):
        for i, value in enumerate(node):
            yield from head_class_counts(value, f'{path}.{i}')


def check_num_classes(cfg: Config, loaders: Sequence[str]) -> None:
    """Stop when a dataset names its own classes (``metainfo.classes``) and
    a head of the model predicts another number of them: mmdet would train
    without a word (COCO's 80 outputs on a 3-class dataset), the commonest
    custom-dataset slip.

    Raises:
        UserError: Both numbers, and every head key to set (cascade stages,
            mask and semantic heads; the RPN's is left alone).
    """
    for loader, dataset in dataset_configs(cfg, loaders):
        classes = (dataset.get('metainfo') or {}).get('classes')
        if not classes:
            continue  # the dataset's own class list, as the model's config
        wanted = len(classes)
        wrong = [(path, n) for path, n in head_class_counts(cfg.model)
                 if n != wanted]
        if wrong:
            sets = ' '.join(f'{path}={wanted}' for path, _ in wrong)
            raise UserError(
                f'{loader}: metainfo.classes names {wanted} classes, but '
                f'{wrong[0][0]} is {wrong[0][1]}; set every head to '
                f'{wanted} in the config or with --cfg-options {sets}')


def skipped_lines(reports: Iterable[SplitReport]) -> List[str]:
    """One line per kind of skipped annotation, for the log."""
    return [
        f'{r.loader}: {r.ann_file}: {r.describe(kind)}' for r in reports
        for kind in r.problems if kind in SKIPS
    ]


def format_report(report: SplitReport) -> str:
    """The summary of one split, as ``check_dataset.py`` prints it."""
    lines = [
        f'{report.loader}: {report.ann_file}',
        f'  images: {report.images} ({report.images_kept} kept by the '
        'config\'s filter)',
        f'  instances: {sum(report.instances.values())} (' +
        ', '.join(f'{name} {count}'
                  for name, count in report.instances.most_common()) + ')',
        '  sizes (COCO area ranges): ' +
        ', '.join(f'{size} {report.sizes[size]}' for size, _ in SIZES),
    ]
    if NOTHING_KEPT in report.stops():
        lines.append(f'  STOP: {report.describe(NOTHING_KEPT)}')
    elif not report.problems:
        lines.append('  problems: none')
    for kind in report.problems:
        verdict = 'STOP' if kind in STOPS else 'skip'
        lines.append(f'  {verdict}: {report.describe(kind)}')
    return '\n'.join(lines)
