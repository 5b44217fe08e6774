# Copyright (c) Res2Net-MMDet contributors. All rights reserved.
"""COCO evaluation speed: pycocotools' ``COCOeval`` (``CocoMetric``), mmdet's
``COCOevalMP`` (``CocoMetric(use_mp_eval=True)``) and faster-coco-eval
(``FasterCocoMetric``) on one generated COCO-like set, with their AP
compared.

What ``tools/analysis_tools/benchmark_coco_eval.py`` measures. The set is
generated from a seed (:func:`generate_coco_like`): COCO-sized images, the
COCO categories, a Poisson number of objects per image (COCO val2017: 7.36)
with polygon masks (crowd regions, 1%, as uncompressed RLE, as in COCO) and
sizes from 6 to 350 px, and a fixed number of detections per image with RLE
masks, as a detector's results: jittered copies of the objects, some with
the wrong class, and false positives at lower scores.

Each timed run evaluates as ``CocoMetric`` does
(:func:`~projects.res2net.evaluation.faster_coco_metric.coco_evaluation`):
mmdet's ``COCO`` of the ground-truth JSON and ``loadRes`` of the results
JSON, loaded afresh for each run and not timed (the evaluators annotate the
objects they are given), then the evaluator built, evaluate, accumulate and
summarize, timed. The evaluators run in turn, the order rotating from one
round to the next (:func:`~projects.res2net.analysis.speed.rotated`).
Each evaluator's twelve stats must equal the reference's (pycocotools')
within :data:`TOLERANCE`.
"""
import contextlib
import gc
import io
import statistics
import time
from typing import (Any, Callable, Dict, List, Mapping, NamedTuple, Sequence,
                    Tuple)

import numpy as np
from mmdet.datasets.api_wrappers import COCO
from mmengine.fileio import load
from pycocotools import mask as mask_utils

from ..datasets.demo_data import COCO_CATEGORIES
from ..engine.fileio import write_json
from ..errors import UserError
from ..evaluation.faster_coco_metric import (INSTALL, STAT_NAMES,
                                             COCOeval_faster, coco_evaluation)
from .speed import rotated

IOU_TYPES = ('bbox', 'segm')
# The stats of two evaluators agree when none differs by more.
TOLERANCE = 1e-4
# COCO's image sizes (most common first) and its ground truth per image.
_SIZES = ((640, 480), (640, 427), (480, 640), (640, 640), (500, 375))
_SIZE_WEIGHTS = (0.45, 0.25, 0.15, 0.1, 0.05)
_CROWD = 0.01
_OBJECT_PX = (6, 350)  # an object's diameter, log-uniform


class CocoLikeSet(NamedTuple):
    """A generated ground truth and its results, as CocoMetric writes them.

    Attributes:
        gt: The COCO ground truth (``images``, ``annotations``,
            ``categories``).
        bbox: The box results (``results.bbox.json``).
        segm: The mask results (``results.segm.json``, without the box,
            as CocoMetric loads them).
    """
    gt: dict
    bbox: List[dict]
    segm: List[dict]


def _polygon(rng: np.random.Generator, center: np.ndarray, radii: np.ndarray,
             size: Tuple[int, int]) -> List[float]:
    """A star-shaped polygon around ``center`` inside the image."""
    vertices = int(rng.integers(8, 21))
    angles = np.sort(rng.uniform(0, 2 * np.pi, vertices))
    reach = rng.uniform(0.7, 1.0, vertices)
    xs = np.clip(center[0] + radii[0] * reach * np.cos(angles), 0, size[0] - 1)
    ys = np.clip(center[1] + radii[1] * reach * np.sin(angles), 0, size[1] - 1)
    return np.round(np.stack([xs, ys], 1).ravel(), 2).tolist()


def _uncompressed(rle: dict) -> dict:
    """``rle`` as COCO writes a crowd region: counts as a list."""
    flat = mask_utils.decode(rle).ravel(order='F')
    bounds = np.concatenate([[0],
                             np.flatnonzero(np.diff(flat)) + 1, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat[0]:  # the counts start with a run of zeros
        counts = [0] + counts
    return dict(counts=counts, size=list(rle['size']))


def generate_coco_like(*,
                       images: int = 5000,
                       classes: int = 80,
                       objects_per_image: float = 7.36,
                       detections_per_image: int = 100,
                       seed: int = 0) -> CocoLikeSet:
    """A COCO-like ground truth and a detector's results on it.

    Args:
        images: How many images.
        classes: How many of COCO's categories (the first ones); the
            objects' classes are drawn with falling frequency, as COCO's.
        objects_per_image: The mean of the Poisson number of objects.
        detections_per_image: Results per image (all images), each with
            a box, a score and an RLE mask.
        seed: The seed of everything drawn.
    """
    if images < 1 or detections_per_image < 1 or objects_per_image <= 0:
        raise UserError('the set needs at least one image, one detection '
                        'per image and a positive number of objects per '
                        'image')
    if not 1 <= classes <= len(COCO_CATEGORIES):
        raise UserError(f'--classes {classes}: choose 1 to '
                        f'{len(COCO_CATEGORIES)} (COCO\'s categories)')
    rng = np.random.default_rng(seed)
    categories = [dict(c) for c in COCO_CATEGORIES[:classes]]
    cat_ids = np.array([c['id'] for c in categories])
    frequency = 1.0 / np.arange(1, classes + 1)**0.9
    frequency /= frequency.sum()
    log_px = np.log(_OBJECT_PX)

    def radii(diameter: float) -> np.ndarray:
        aspect = np.exp(rng.normal(0, 0.4))
        return diameter / 2 * np.array([np.sqrt(aspect), 1 / np.sqrt(aspect)])

    gt_images, annotations, bbox, segm = [], [], [], []
    for image_id in range(1, images + 1):
        size = _SIZES[rng.choice(len(_SIZES), p=_SIZE_WEIGHTS)]
        width, height = size
        gt_images.append(
            dict(
                id=image_id,
                width=width,
                height=height,
                file_name=f'{image_id:012d}.jpg'))
        # The objects: polygons, a few crowd regions.
        objects = []
        for _ in range(rng.poisson(objects_per_image)):
            diameter = float(np.exp(rng.uniform(*log_px)))
            center = rng.uniform((0, 0), size)
            objects.append((center, radii(diameter),
                            int(rng.choice(cat_ids, p=frequency)),
                            bool(rng.random() < _CROWD)))
        polygons = [_polygon(rng, c, r, size) for c, r, _, _ in objects]
        rles = mask_utils.frPyObjects(polygons, height, width) \
            if polygons else []
        for (_, _, cat_id, crowd), polygon, rle in zip(objects, polygons,
                                                       rles):
            area = float(mask_utils.area(rle))
            if area < 1:  # clipped away at the border
                continue
            annotations.append(
                dict(
                    id=len(annotations) + 1,
                    image_id=image_id,
                    category_id=cat_id,
                    segmentation=_uncompressed(rle) if crowd else [polygon],
                    area=area,
                    bbox=mask_utils.toBbox(rle).tolist(),
                    iscrowd=int(crowd)))
        # The results: 1-3 jittered copies of each object (a tenth with the
        # wrong class), then false positives at lower scores.
        found = []
        for center, rad, cat_id, _ in objects:
            for copy in range(int(rng.integers(1, 4))):
                shift = rng.normal(0, 0.08, 2) * rad * 2
                scale = np.exp(rng.normal(0, 0.12, 2))
                label = cat_id if rng.random() < 0.9 else int(
                    rng.choice(cat_ids))
                score = rng.beta(4, 1.5) if copy == 0 else rng.beta(2, 3)
                found.append((center + shift, rad * scale, label, score))
        seen = [obj[2] for obj in objects] or list(cat_ids)
        while len(found) < detections_per_image:
            diameter = float(np.exp(rng.uniform(*log_px)))
            label = int(rng.choice(seen)) if rng.random() < 0.5 else int(
                rng.choice(cat_ids, p=frequency))
            found.append((rng.uniform(
                (0, 0), size), radii(diameter), label, rng.beta(1.2, 4)))
        found.sort(key=lambda item: -item[3])
        found = found[:detections_per_image]
        masks = mask_utils.frPyObjects(
            [_polygon(rng, c, r, size) for c, r, _, _ in found], height, width)
        boxes = mask_utils.toBbox(masks).tolist()
        for (_, _, label, score), mask, box in zip(found, masks, boxes):
            result = dict(
                image_id=image_id,
                category_id=label,
                score=round(float(score), 5))
            bbox.append(dict(result, bbox=[round(v, 2) for v in box]))
            segm.append(
                dict(
                    result,
                    segmentation=dict(
                        counts=mask['counts'].decode(),
                        size=list(mask['size']))))
    gt = dict(
        info=dict(description=f'generated, seed {seed}'),
        images=gt_images,
        annotations=annotations,
        categories=categories)
    return CocoLikeSet(gt, bbox, segm)


def describe_set(data: CocoLikeSet) -> dict:
    """The counts of a set: images, classes, objects (crowd; by COCO's
    area ranges), results."""
    areas = np.array([ann['area'] for ann in data.gt['annotations']])
    return dict(
        images=len(data.gt['images']),
        classes=len(data.gt['categories']),
        objects=len(areas),
        crowd=sum(ann['iscrowd'] for ann in data.gt['annotations']),
        small=int((areas < 32**2).sum()),
        medium=int(((areas >= 32**2) & (areas < 96**2)).sum()),
        large=int((areas >= 96**2).sum()),
        results=len(data.bbox))


def write_set(data: CocoLikeSet, folder: str) -> Dict[str, str]:
    """Write the set's JSON files into ``folder``: their paths, by
    ``gt``, ``bbox`` and ``segm``."""
    paths = {
        'gt': f'{folder}/gt.json',
        'bbox': f'{folder}/results.bbox.json',
        'segm': f'{folder}/results.segm.json'
    }
    for key, path in paths.items():
        write_json(path, getattr(data, key))
    return paths


class Timings(NamedTuple):
    """What :func:`benchmark_coco_eval` measured.

    Attributes:
        seconds: The time of each run, by IoU type and evaluator.
        loading: The untimed loading before each run (mmdet's ``COCO`` and
            ``loadRes``), by IoU type: the same for every evaluator.
        stats: The twelve stats, by IoU type and evaluator.
    """
    seconds: Dict[str, Dict[str, List[float]]]
    loading: Dict[str, List[float]]
    stats: Dict[str, Dict[str, np.ndarray]]


def check_evaluators(evaluators: Sequence[str]) -> None:
    """Stop, naming the fix, on an evaluator that cannot run here."""
    if 'faster-coco-eval' in evaluators and COCOeval_faster is None:
        raise UserError('faster-coco-eval is not installed: '
                        f'{INSTALL} (or leave it out of --evaluators)')


@contextlib.contextmanager
def _quiet():
    """The evaluators' progress lines (and COCOevalMP's progress bars,
    from its worker processes) kept off the tool's output."""
    with contextlib.redirect_stdout(io.StringIO()), \
            contextlib.redirect_stderr(io.StringIO()):
        yield


def benchmark_coco_eval(paths: Mapping[str, str],
                        *,
                        iou_types: Sequence[str],
                        evaluators: Sequence[str],
                        repeats: int,
                        on_run: Callable[[int, str, str, float],
                                         None] = lambda *_: None) -> Timings:
    """Time ``evaluators`` on the files of :func:`write_set`, interleaved.

    Args:
        paths: The ground truth's and the results' JSON files.
        iou_types: ``'bbox'`` and/or ``'segm'``.
        evaluators: Some of
            :data:`~projects.res2net.evaluation.faster_coco_metric.EVALUATORS`.
        repeats: Rounds; each runs every evaluator on each IoU type once.
        on_run: Called after each run with its round, IoU type, evaluator
            and seconds (a long benchmark's progress).
    """
    check_evaluators(evaluators)
    with _quiet():
        coco = COCO(paths['gt'])
    img_ids, cat_ids = coco.get_img_ids(), coco.get_cat_ids()
    del coco
    seconds = {t: {e: [] for e in evaluators} for t in iou_types}
    loading: Dict[str, List[float]] = {t: [] for t in iou_types}
    stats: Dict[str, Dict[str, np.ndarray]] = {t: {} for t in iou_types}
    for round_ in range(repeats):
        for iou_type in iou_types:
            for evaluator in rotated(evaluators, round_):
                start = time.perf_counter()
                with _quiet():
                    coco_gt = COCO(paths['gt'])
                    coco_dt = coco_gt.loadRes(load(paths[iou_type]))
                loading[iou_type].append(time.perf_counter() - start)
                start = time.perf_counter()
                with _quiet():
                    coco_eval = coco_evaluation(
                        evaluator,
                        coco_gt,
                        coco_dt,
                        iou_type,
                        img_ids=img_ids,
                        cat_ids=cat_ids)
                seconds[iou_type][evaluator].append(time.perf_counter() -
                                                    start)
                on_run(round_, iou_type, evaluator,
                       seconds[iou_type][evaluator][-1])
                stats[iou_type][evaluator] = np.asarray(
                    coco_eval.stats[:len(STAT_NAMES)], dtype=float)
                del coco_gt, coco_dt, coco_eval
                gc.collect()
    return Timings(seconds, loading, stats)


def reference_of(evaluators: Sequence[str]) -> str:
    """The evaluator the others are compared with: pycocotools if timed."""
    return 'pycocotools' if 'pycocotools' in evaluators else evaluators[0]


def summarize(timings: Timings) -> Dict[str, Dict[str, Dict[str, Any]]]:
    """Each evaluator's median, speed-up over the reference and largest
    stat difference from it, by IoU type."""
    found: Dict[str, Dict[str, Dict[str, Any]]] = {}
    for iou_type, by_evaluator in timings.seconds.items():
        reference = reference_of(list(by_evaluator))
        base = statistics.median(by_evaluator[reference])
        ref_stats = timings.stats[iou_type][reference]
        found[iou_type] = {}
        for evaluator, seconds in by_evaluator.items():
            median = statistics.median(seconds)
            stats = timings.stats[iou_type][evaluator]
            found[iou_type][evaluator] = dict(
                seconds=seconds,
                median=median,
                speedup=base / median,
                stats=dict(zip(STAT_NAMES, stats.tolist())),
                max_abs_diff=float(np.abs(stats - ref_stats).max()))
    return found


def disagreements(summary: Mapping[str, Mapping[str, Mapping[str, Any]]],
                  tolerance: float = TOLERANCE) -> List[str]:
    """One line per evaluator whose stats differ from the reference's by
    more than ``tolerance``."""
    return [
        f'{iou_type}: {evaluator} differs from {reference_of(list(rows))} '
        f'by {row["max_abs_diff"]:.2e}' for iou_type, rows in summary.items()
        for evaluator, row in rows.items() if row['max_abs_diff'] > tolerance
    ]


def table(summary: Mapping[str, Mapping[str, Mapping[str, Any]]],
          loading: Mapping[str, Sequence[float]]) -> str:
    """The markdown table of :func:`summarize`'s results."""
    reference = reference_of(list(next(iter(summary.values()))))
    lines = [
        '| IoU type | evaluator | median s | each run, s | '
        f'speed-up over {reference} | max abs diff of the 12 stats |',
        '|---|---|---|---|---|---|'
    ]
    for iou_type, rows in summary.items():
        for evaluator, row in rows.items():
            runs = ', '.join(f'{s:.1f}' for s in row['seconds'])
            lines.append(f'| {iou_type} | {evaluator} | {row["median"]:.1f} '
                         f'| {runs} | {row["speedup"]:.2f}× | '
                         f'{row["max_abs_diff"]:.1e} |')
        lines.append(f'| {iou_type} | (loading before each run: COCO + '
                     f'loadRes, not timed) | '
                     f'{statistics.median(loading[iou_type]):.1f} | | | |')
    return '\n'.join(lines)
