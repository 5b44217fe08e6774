# Copyright (c) Res2Net-MMDet contributors. All rights reserved.
"""FasterCocoMetric gives CocoMetric's results and pycocotools' twelve
stats: box AP from the trained demo detector's predictions (a config that
names the metric, run by test.py), mask AP from masks made from the demo's
ground truth; and without faster-coco-eval it is CocoMetric, after one log
line."""
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np
import torch
from mmdet.datasets import CocoDataset
from mmdet.datasets.api_wrappers import COCO
from mmdet.evaluation.metrics import CocoMetric
from mmdet.registry import METRICS
from mmengine.config import Config
from mmengine.fileio import load
from mmengine.logging import MMLogger
from pycocotools import mask as mask_utils
from pycocotools.cocoeval import COCOeval

import projects.res2net  # noqa: F401  (registers FasterCocoMetric)
from projects.res2net.evaluation import faster_coco_metric
from projects.res2net.evaluation.faster_coco_metric import (STAT_NAMES,
                                                            FasterCocoMetric,
                                                            coco_evaluation)

DEMO = 'configs/demo/faster_rcnn_r2_50_fpn_demo.py'
CLASSES = CocoDataset.METAINFO['classes']


def _load(ann_file: Path, results: Path, iou_type: str) -> Tuple[COCO, COCO]:
    """The ground truth and a results file, as CocoMetric loads them."""
    coco_gt = COCO(str(ann_file))
    predictions = load(results)
    if iou_type == 'segm':
        for prediction in predictions:
            prediction.pop('bbox')
    return coco_gt, coco_gt.loadRes(predictions)


def _pycocotools(ann_file: Path, results: Path, iou_type: str) -> COCOeval:
    """pycocotools' own evaluation, with CocoMetric's parameters."""
    coco_gt, coco_dt = _load(ann_file, results, iou_type)
    coco_eval = COCOeval(coco_gt, coco_dt, iou_type)
    coco_eval.params.catIds = coco_gt.get_cat_ids(cat_names=CLASSES)
    coco_eval.params.imgIds = coco_gt.get_img_ids()
    coco_eval.params.maxDets = [100, 300, 1000]
    coco_eval.evaluate()
    coco_eval.accumulate()
    coco_eval.summarize()
    return coco_eval


def _faster_stats(ann_file: Path, results: Path, iou_type: str) -> np.ndarray:
    """The stats FasterCocoMetric computes from its own results file."""
    coco_gt, coco_dt = _load(ann_file, results, iou_type)
    return coco_evaluation(
        'faster-coco-eval',
        coco_gt,
        coco_dt,
        iou_type,
        img_ids=coco_gt.get_img_ids(),
        cat_ids=coco_gt.get_cat_ids(cat_names=CLASSES)).stats


def _assert_same(ours: Dict[str, float], theirs: Dict[str, float]) -> None:
    """The same keys in the same order, the same values (a class without
    objects has AP nan in both)."""
    assert list(ours) == list(theirs)
    np.testing.assert_equal(list(ours.values()), list(theirs.values()))


def _metric(kind: type,
            ann_file: Path,
            prefix: Path,
            metric: List[str],
            classwise: bool = True) -> CocoMetric:
    """``kind`` reporting all twelve stats (and each class's AP)."""
    return kind(
        ann_file=str(ann_file),
        metric=metric,
        metric_items=list(STAT_NAMES),
        classwise=classwise,
        outfile_prefix=str(prefix))


def test_box_ap_of_the_demo_detector(tested_demo, evaluate, tmp_path):
    samples = load(tested_demo.pickle)
    ours = evaluate(
        _metric(FasterCocoMetric, tested_demo.ann_file, tmp_path / 'faster',
                ['bbox']), samples)
    theirs = evaluate(
        _metric(CocoMetric, tested_demo.ann_file, tmp_path / 'coco', ['bbox']),
        samples)
    _assert_same(ours, theirs)
    assert len(ours) == 12 + 80  # the stats, each class's AP
    # test.py ran the demo config, whose evaluator is FasterCocoMetric: the
    # same AP.
    assert Config.fromfile(DEMO).test_evaluator.type == 'FasterCocoMetric'
    for item in STAT_NAMES[:6]:
        assert tested_demo.metrics[f'coco/bbox_{item}'] == \
            theirs[f'bbox_{item}']
    assert theirs['bbox_mAP'] > 0.5  # a trained detector's boxes
    faster = _faster_stats(tested_demo.ann_file, tmp_path / 'faster.bbox.json',
                           'bbox')
    reference = _pycocotools(tested_demo.ann_file, tmp_path / 'coco.bbox.json',
                             'bbox').stats
    np.testing.assert_allclose(faster, reference, rtol=0, atol=1e-4)


def _mask_samples(ann_file: Path) -> List[dict]:
    """Mask results made from the ground truth: two shifted copies of each
    object, a third of them with another class, and on three images 120
    false positives of one class (more than 100 results of a class: where
    faster-coco-eval's own mAP is not pycocotools')."""
    coco = COCO(str(ann_file))
    cat_ids = coco.get_cat_ids(cat_names=CLASSES)
    rng = np.random.default_rng(0)
    samples = []
    for index, image_id in enumerate(coco.get_img_ids()):
        image = coco.imgs[image_id]
        shape = (image['height'], image['width'])
        masks, labels, scores = [], [], []
        for ann in coco.imgToAnns[image_id]:
            for copy in range(2):
                dy, dx = rng.integers(-4, 5, 2)
                masks.append(np.roll(coco.annToMask(ann), (dy, dx), (0, 1)))
                label = cat_ids.index(ann['category_id'])
                labels.append(label if rng.random() < 0.67 else (label + 1) %
                              len(cat_ids))
                scores.append(rng.random())
        if index < 3 and labels:
            for _ in range(120):
                y, x = rng.integers(0, np.array(shape) - 16)
                mask = np.zeros(shape, np.uint8)
                mask[y:y + rng.integers(4, 16), x:x + rng.integers(4, 16)] = 1
                masks.append(mask)
                labels.append(labels[0])
                # above most of the true ones: the 20 below the first 100
                # take precision away
                scores.append(rng.uniform(0.5, 1))
        rles = [mask_utils.encode(np.asfortranarray(m)) for m in masks]
        boxes = [mask_utils.toBbox(rle) for rle in rles]
        samples.append(
            dict(
                img_id=image_id,
                ori_shape=shape,
                pred_instances=dict(
                    bboxes=torch.tensor(
                        np.array([[x, y, x + w, y + h]
                                  for x, y, w, h in boxes]).reshape(-1, 4)),
                    scores=torch.tensor(scores),
                    labels=torch.tensor(labels, dtype=torch.long),
                    masks=rles)))
    return samples


def test_mask_and_box_ap_with_more_than_100_results_per_image(
        trained_demo, evaluate, tmp_path):
    ann_file = trained_demo.val_ann_file
    samples = _mask_samples(ann_file)
    ours = evaluate(
        _metric(FasterCocoMetric, ann_file, tmp_path / 'faster',
                ['bbox', 'segm']), samples)
    theirs = evaluate(
        _metric(CocoMetric, ann_file, tmp_path / 'coco', ['bbox', 'segm']),
        samples)
    _assert_same(ours, theirs)
    for iou_type in ('bbox', 'segm'):
        reference = _pycocotools(ann_file, tmp_path / f'coco.{iou_type}.json',
                                 iou_type)
        faster = _faster_stats(ann_file, tmp_path / f'faster.{iou_type}.json',
                               iou_type)
        np.testing.assert_allclose(faster, reference.stats, rtol=0, atol=1e-4)
        # The case is there: mAP at 100 results per image is not mAP at
        # 1000 (what faster-coco-eval's own summary reports).
        precision = reference.eval['precision']
        at_100, at_1000 = (precision[..., 0, m] for m in (0, 2))
        assert abs(at_100[at_100 > -1].mean() -
                   at_1000[at_1000 > -1].mean()) > 1e-3


def test_without_the_package_it_is_coco_metric_after_one_line(
        trained_demo, evaluate, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(faster_coco_metric, 'COCOeval_faster', None)
    MMLogger.get_instance('faster_coco_metric_test')  # logs to captured
    ann_file = trained_demo.val_ann_file
    samples = _mask_samples(ann_file)[:20]
    metric = METRICS.build(
        dict(
            type='FasterCocoMetric',
            ann_file=str(ann_file),
            metric_items=list(STAT_NAMES),
            outfile_prefix=str(tmp_path / 'fallback')))
    built = capsys.readouterr().out
    assert built.count('faster-coco-eval is not installed') == 1, built
    assert 'pip install faster-coco-eval==1.8.0' in built
    ours = evaluate(metric, samples)
    evaluated = capsys.readouterr().out
    assert 'Running per image evaluation' in evaluated  # pycocotools'
    assert 'not installed' not in evaluated  # said once, when built
    theirs = evaluate(
        _metric(
            CocoMetric, ann_file, tmp_path / 'coco', ['bbox'],
            classwise=False), samples)
    _assert_same(ours, theirs)
