# Copyright (c) Res2Net-MMDet contributors. All rights reserved.
"""``FasterCocoMetric``: mmdet's ``CocoMetric`` evaluated by faster-coco-eval,
with pycocotools' AP.

faster-coco-eval's ``COCOeval_faster`` computes the same matching and
accumulation as pycocotools' ``COCOeval`` in C++, and mask IoUs on several
threads. ``FasterCocoMetric`` hands it the ground truth and results that
``CocoMetric`` builds (the same JSON files, mmdet's ``COCO`` objects, the same
parameters) and reports what ``CocoMetric`` reports: the same keys
(``coco/bbox_mAP``, ...), rounding, log lines and class-wise table.

mmdet 3.3's ``CocoMetric.compute_metrics`` builds pycocotools' ``COCOeval``
(or mmdet's ``COCOevalMP``, ``use_mp_eval=True``) inside the method, with no
argument or hook that takes another class, so the subclass overrides that
one method; ``process``, ``results2json``, ``gt_to_coco_json`` and
``fast_eval_recall`` are ``CocoMetric``'s.

The twelve stats are pycocotools' (:func:`pycocotools_stats`):
faster-coco-eval's own ``summarize`` takes every AP at the largest
``maxDets`` (1000 with mmdet's ``proposal_nums``), pycocotools takes mAP at
100 detections per image and the other AP at ``maxDets[2]``; for a detector
that keeps more than 100 detections per image (DINO keeps 300) the two mAP
differ.

Without the package the metric is ``CocoMetric``, after one log line that
says so and how to install it.
"""
import logging
import os.path as osp
import tempfile
from collections import OrderedDict
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
from mmdet.datasets.api_wrappers import COCO, COCOeval, COCOevalMP
from mmdet.evaluation.metrics import CocoMetric
from mmdet.registry import METRICS
from mmengine.fileio import load
from mmengine.logging import MMLogger, print_log
from terminaltables import AsciiTable

from ..errors import UserError

try:
    from faster_coco_eval import COCOeval_faster
except ImportError:  # an optional package: CocoMetric's COCOeval then
    COCOeval_faster = None

INSTALL = 'pip install faster-coco-eval==1.8.0'

# What evaluates: CocoMetric's default, CocoMetric(use_mp_eval=True), and
# FasterCocoMetric's.
EVALUATORS = ('pycocotools', 'mmdet-mp', 'faster-coco-eval')

# pycocotools' twelve detection stats, by CocoMetric's names of them.
STAT_NAMES = ('mAP', 'mAP_50', 'mAP_75', 'mAP_s', 'mAP_m', 'mAP_l', 'AR@100',
              'AR@300', 'AR@1000', 'AR_s@1000', 'AR_m@1000', 'AR_l@1000')
_AREAS = ('small', 'medium', 'large')


def pycocotools_stats(coco_eval: Any) -> np.ndarray:
    """pycocotools' twelve detection stats of an accumulated
    ``COCOeval_faster``, printed as pycocotools prints them.

    pycocotools' ``summarize`` (box and mask types): mAP at 100 detections
    per image (-1 where ``maxDets`` has no 100), the other AP and the area
    ARs at ``maxDets[2]``, then AR at each of ``maxDets[:3]``.

    Returns:
        The stats, also set as ``coco_eval.stats``.
    """
    max_dets = coco_eval.params.maxDets
    top = max_dets[2]  # pycocotools' own choice (it needs three values)

    def summary(ap: int, **kwargs: Any) -> float:
        # faster-coco-eval's one-line summary: pycocotools' format.
        return float(coco_eval._summarize(ap, **kwargs))

    stats = [
        summary(1, maxDets=100) if 100 in max_dets else -1.0,
        summary(1, iouThr=.5, maxDets=top),
        summary(1, iouThr=.75, maxDets=top),
        *(summary(1, areaRng=area, maxDets=top) for area in _AREAS),
        *(summary(0, maxDets=n) for n in max_dets[:3]),
        *(summary(0, areaRng=area, maxDets=top) for area in _AREAS),
    ]
    coco_eval.stats = np.array(stats)
    return coco_eval.stats


def coco_evaluation(evaluator: str,
                    coco_gt: COCO,
                    coco_dt: COCO,
                    iou_type: str,
                    *,
                    img_ids: Sequence[int],
                    cat_ids: Sequence[int],
                    max_dets: Sequence[int] = (100, 300, 1000),
                    iou_thrs: Optional[np.ndarray] = None,
                    use_cats: bool = True) -> Any:
    """Evaluate ``coco_dt`` against ``coco_gt`` as ``CocoMetric`` does.

    The parameters ``CocoMetric`` sets, then evaluate, accumulate and
    summarize.

    Args:
        evaluator: One of :data:`EVALUATORS`: ``'pycocotools'``
            (``CocoMetric``), ``'mmdet-mp'`` (``CocoMetric`` with
            ``use_mp_eval=True``: mmdet's ``COCOevalMP``, 8 processes) or
            ``'faster-coco-eval'`` (``FasterCocoMetric``).
        coco_gt: The ground truth (mmdet's ``COCO``).
        coco_dt: The results, ``coco_gt.loadRes(...)``.
        iou_type: ``'bbox'`` or ``'segm'``.
        img_ids: The images to evaluate.
        cat_ids: The categories to evaluate.
        max_dets: ``CocoMetric``'s ``proposal_nums``.
        iou_thrs: The IoU thresholds; pycocotools' 0.50:0.95 if None.
        use_cats: False for class-agnostic recall (``'proposal'``).

    Returns:
        The evaluator, accumulated: ``stats`` holds pycocotools' twelve
        stats, ``eval['precision']`` the precision by IoU threshold, recall,
        category, area range and ``maxDets``.
    """
    if evaluator == 'faster-coco-eval':
        if COCOeval_faster is None:
            raise UserError(f'faster-coco-eval is not installed: {INSTALL}')
        # print: the summary lines where pycocotools prints them (stdout).
        coco_eval = COCOeval_faster(
            coco_gt, coco_dt, iou_type, print_function=print)
    elif evaluator == 'mmdet-mp':
        coco_eval = COCOevalMP(coco_gt, coco_dt, iou_type)
    elif evaluator == 'pycocotools':
        coco_eval = COCOeval(coco_gt, coco_dt, iou_type)
    else:
        raise UserError(f'no COCO evaluator {evaluator!r}: choose one of '
                        f'{", ".join(EVALUATORS)}')
    coco_eval.params.catIds = list(cat_ids)
    coco_eval.params.imgIds = list(img_ids)
    coco_eval.params.maxDets = list(max_dets)
    if iou_thrs is not None:
        coco_eval.params.iouThrs = iou_thrs
    coco_eval.params.useCats = int(use_cats)
    coco_eval.evaluate()
    coco_eval.accumulate()
    if evaluator == 'faster-coco-eval':
        pycocotools_stats(coco_eval)
    else:
        coco_eval.summarize()
    return coco_eval


@METRICS.register_module()
class FasterCocoMetric(CocoMetric):
    """mmdet's ``CocoMetric`` evaluated by faster-coco-eval.

    It takes ``CocoMetric``'s arguments and gives its results: the same
    box, mask and proposal AP and AR (pycocotools' stats), keys, log lines
    and class-wise table. ``use_mp_eval`` matters only without the package,
    where this is ``CocoMetric``.

    Example:
        In a config, after ``custom_imports`` of ``projects.res2net``::

            val_evaluator = dict(type='FasterCocoMetric',
                                 ann_file=..., metric=['bbox', 'segm'])
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if COCOeval_faster is None:
            print_log(
                'FasterCocoMetric: faster-coco-eval is not installed, so '
                "pycocotools' COCOeval evaluates (CocoMetric, the same AP, "
                f'slower); to evaluate faster: {INSTALL}',
                logger='current',
                level=logging.WARNING)

    def compute_metrics(self, results: list) -> Dict[str, float]:
        """``CocoMetric.compute_metrics`` with faster-coco-eval's COCOeval.

        Args:
            results: The processed results of each batch (``process``).

        Returns:
            The metrics by name, as ``CocoMetric`` names and rounds them.
        """
        if COCOeval_faster is None:
            return super().compute_metrics(results)
        logger: MMLogger = MMLogger.get_current_instance()
        gts, preds = zip(*results)
        tmp_dir = None
        if self.outfile_prefix is None:
            tmp_dir = tempfile.TemporaryDirectory()
            outfile_prefix = osp.join(tmp_dir.name, 'results')
        else:
            outfile_prefix = self.outfile_prefix
        try:
            return self._evaluate(gts, preds, outfile_prefix, logger)
        finally:
            if tmp_dir is not None:
                tmp_dir.cleanup()

    def _evaluate(self, gts: Sequence[dict], preds: Sequence[dict],
                  outfile_prefix: str, logger: MMLogger) -> Dict[str, float]:
        """The steps of mmdet 3.3's ``CocoMetric.compute_metrics``
        (OpenMMLab, Apache-2.0), in its order and with its messages; only
        the evaluator differs (:func:`coco_evaluation`)."""
        if self._coco_api is None:
            logger.info('Converting ground truth to coco format...')
            self._coco_api = COCO(
                self.gt_to_coco_json(
                    gt_dicts=gts, outfile_prefix=outfile_prefix))
        if self.cat_ids is None:
            self.cat_ids = self._coco_api.get_cat_ids(
                cat_names=self.dataset_meta['classes'])
        if self.img_ids is None:
            self.img_ids = self._coco_api.get_img_ids()
        result_files = self.results2json(preds, outfile_prefix)

        eval_results: Dict[str, float] = OrderedDict()
        if self.format_only:
            logger.info(f'results are saved in {osp.dirname(outfile_prefix)}')
            return eval_results

        for metric in self.metrics:
            logger.info(f'Evaluating {metric}...')
            if metric == 'proposal_fast':
                ar = self.fast_eval_recall(
                    preds, self.proposal_nums, self.iou_thrs, logger=logger)
                for i, num in enumerate(self.proposal_nums):
                    eval_results[f'AR@{num}'] = ar[i]
                logger.info(''.join(
                    f'\nAR@{num}\t{ar[i]:.4f}'
                    for i, num in enumerate(self.proposal_nums)))
                continue
            iou_type = 'bbox' if metric == 'proposal' else metric
            if metric not in result_files:
                raise KeyError(f'{metric} is not in results')
            try:
                predictions = load(result_files[metric])
                if iou_type == 'segm':
                    # As CocoMetric: without the box, the mask's area sorts
                    # a result into small, medium or large.
                    for prediction in predictions:
                        prediction.pop('bbox')
                coco_dt = self._coco_api.loadRes(predictions)
            except IndexError:  # pycocotools' loadRes on no results
                logger.error(
                    'The testing results of the whole dataset is empty.')
                break
            for item in self.metric_items or ():
                if item not in STAT_NAMES:
                    raise KeyError(f'metric item "{item}" is not supported')

            coco_eval = coco_evaluation(
                'faster-coco-eval',
                self._coco_api,
                coco_dt,
                iou_type,
                img_ids=self.img_ids,
                cat_ids=self.cat_ids,
                max_dets=self.proposal_nums,
                iou_thrs=self.iou_thrs,
                use_cats=metric != 'proposal')
            stats = coco_eval.stats
            if metric == 'proposal':
                for item in self.metric_items or STAT_NAMES[6:]:
                    eval_results[item] = float(
                        f'{stats[STAT_NAMES.index(item)]:.3f}')
                continue
            if self.classwise:
                eval_results.update(self._classwise(coco_eval, logger))
            for item in self.metric_items or STAT_NAMES[:6]:
                value = stats[STAT_NAMES.index(item)]
                eval_results[f'{metric}_{item}'] = float(f'{round(value, 3)}')
            logger.info(f'{metric}_mAP_copypaste: ' +
                        ' '.join(f'{ap:.3f}' for ap in stats[:6]))
        return eval_results

    def _classwise(self, coco_eval: Any, logger: MMLogger) -> Dict[str, float]:
        """``CocoMetric``'s per-category AP (from detectron2): its
        ``<class>_precision`` results and its logged table."""
        # precision: (IoU, recall, category, area range, maxDets)
        precisions = coco_eval.eval['precision']
        assert len(self.cat_ids) == precisions.shape[2]

        def mean(precision: np.ndarray) -> float:
            precision = precision[precision > -1]
            return np.mean(precision) if precision.size else float('nan')

        results: Dict[str, float] = {}
        rows: List[Tuple[str, ...]] = []
        for idx, cat_id in enumerate(self.cat_ids):
            name = self._coco_api.loadCats(cat_id)[0]['name']
            aps = [
                mean(precisions[:, :, idx, 0, -1]),
                # IoU 0.50 and 0.75
                *(mean(precisions[iou, :, idx, 0, -1]) for iou in (0, 5)),
                # small, medium, large
                *(mean(precisions[:, :, idx, area, -1]) for area in (1, 2, 3))
            ]
            results[f'{name}_precision'] = round(aps[0], 3)
            rows.append((name, *(f'{round(ap, 3)}' for ap in aps)))
        headers = ('category', 'mAP', 'mAP_50', 'mAP_75', 'mAP_s', 'mAP_m',
                   'mAP_l')
        logger.info('\n' + AsciiTable([headers, *rows]).table)
        return results
