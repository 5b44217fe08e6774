# Copyright (c) Res2Net-MMDet contributors. All rights reserved.
"""Deterministic synthetic demo dataset in the exact COCO layout.

The dataset lets MMDetection's *unchanged* COCO configs (Faster/Mask/Cascade
R-CNN, HTC) train and evaluate in minutes on a CPU: point ``data_root`` at the
output directory and everything (boxes, polygons, COCO-stuff style semantic
maps for HTC) is where those configs expect it.

Layout written under ``out_dir``::

    train2017/000000000001.png ...                RGB images
    val2017/000000000001.png ...
    annotations/instances_train2017.json          COCO instances
    annotations/instances_val2017.json
    stuffthingmaps/train2017/000000000001.png ... semantic maps (uint8)
    stuffthingmaps/val2017/...
    demo_data.json                                generation manifest

Only numpy, cv2, pycocotools and the standard library are imported so that
the module is cheap to import (e.g. from a Makefile target).
"""
import json
import os
import os.path as osp
import shutil
import tempfile
import warnings
from types import MappingProxyType
from typing import Any, Dict, List, Mapping, Optional, Tuple

import cv2
import numpy as np
from pycocotools import mask as mask_utils

__all__ = [
    'COCO_CATEGORIES', 'DEMO_SHAPES', 'FORMAT_VERSION', 'MANIFEST_NAME',
    'generate_demo_dataset'
]

# Bump whenever the generated content changes for the same parameters, so
# that an existing dataset made by an older generator is not mistaken for an
# up-to-date one.
FORMAT_VERSION = 1

# The generator's name, recorded in the annotations and the manifest. It is
# the module's name before the package was split by concern: kept, so that
# the data stay byte for byte what they were (FORMAT_VERSION 1).
GENERATOR = 'projects.res2net.demo_data'

MANIFEST_NAME = 'demo_data.json'

# The full COCO 2017 category table (real ids with the standard gaps, real
# names and supercategories, COCO order). Writing all 80 categories, not just
# the three that are drawn, is what lets the stock 80-class COCO configs read
# the dataset unchanged: ``CocoDataset`` looks categories up by these names.
COCO_CATEGORIES: Tuple[Mapping[str, Any], ...] = tuple(
    MappingProxyType(dict(id=cat_id, name=name, supercategory=supercat))
    for cat_id, name, supercat in (
        (1, 'person', 'person'),
        (2, 'bicycle', 'vehicle'),
        (3, 'car', 'vehicle'),
        (4, 'motorcycle', 'vehicle'),
        (5, 'airplane', 'vehicle'),
        (6, 'bus', 'vehicle'),
        (7, 'train', 'vehicle'),
        (8, 'truck', 'vehicle'),
        (9, 'boat', 'vehicle'),
        (10, 'traffic light', 'outdoor'),
        (11, 'fire hydrant', 'outdoor'),
        (13, 'stop sign', 'outdoor'),
        (14, 'parking meter', 'outdoor'),
        (15, 'bench', 'outdoor'),
        (16, 'bird', 'animal'),
        (17, 'cat', 'animal'),
        (18, 'dog', 'animal'),
        (19, 'horse', 'animal'),
        (20, 'sheep', 'animal'),
        (21, 'cow', 'animal'),
        (22, 'elephant', 'animal'),
        (23, 'bear', 'animal'),
        (24, 'zebra', 'animal'),
        (25, 'giraffe', 'animal'),
        (27, 'backpack', 'accessory'),
        (28, 'umbrella', 'accessory'),
        (31, 'handbag', 'accessory'),
        (32, 'tie', 'accessory'),
        (33, 'suitcase', 'accessory'),
        (34, 'frisbee', 'sports'),
        (35, 'skis', 'sports'),
        (36, 'snowboard', 'sports'),
        (37, 'sports ball', 'sports'),
        (38, 'kite', 'sports'),
        (39, 'baseball bat', 'sports'),
        (40, 'baseball glove', 'sports'),
        (41, 'skateboard', 'sports'),
        (42, 'surfboard', 'sports'),
        (43, 'tennis racket', 'sports'),
        (44, 'bottle', 'kitchen'),
        (46, 'wine glass', 'kitchen'),
        (47, 'cup', 'kitchen'),
        (48, 'fork', 'kitchen'),
        (49, 'knife', 'kitchen'),
        (50, 'spoon', 'kitchen'),
        (51, 'bowl', 'kitchen'),
        (52, 'banana', 'food'),
        (53, 'apple', 'food'),
        (54, 'sandwich', 'food'),
        (55, 'orange', 'food'),
        (56, 'broccoli', 'food'),
        (57, 'carrot', 'food'),
        (58, 'hot dog', 'food'),
        (59, 'pizza', 'food'),
        (60, 'donut', 'food'),
        (61, 'cake', 'food'),
        (62, 'chair', 'furniture'),
        (63, 'couch', 'furniture'),
        (64, 'potted plant', 'furniture'),
        (65, 'bed', 'furniture'),
        (67, 'dining table', 'furniture'),
        (70, 'toilet', 'furniture'),
        (72, 'tv', 'electronic'),
        (73, 'laptop', 'electronic'),
        (74, 'mouse', 'electronic'),
        (75, 'remote', 'electronic'),
        (76, 'keyboard', 'electronic'),
        (77, 'cell phone', 'electronic'),
        (78, 'microwave', 'appliance'),
        (79, 'oven', 'appliance'),
        (80, 'toaster', 'appliance'),
        (81, 'sink', 'appliance'),
        (82, 'refrigerator', 'appliance'),
        (84, 'book', 'indoor'),
        (85, 'clock', 'indoor'),
        (86, 'vase', 'indoor'),
        (87, 'scissors', 'indoor'),
        (88, 'teddy bear', 'indoor'),
        (89, 'hair drier', 'indoor'),
        (90, 'toothbrush', 'indoor'),
    ))

# The COCO categories that are actually drawn, and as which shape. Objects
# only ever come from this mapping; COCO mAP averages over categories that
# have ground truth, so the metric covers exactly these three.
DEMO_SHAPES: Mapping[str, str] = MappingProxyType({
    'sports ball': 'disc',
    'kite': 'triangle',
    'tv': 'rectangle',
})

_CAT_ID_BY_NAME = {cat['name']: cat['id'] for cat in COCO_CATEGORIES}
_DEMO_NAMES = tuple(DEMO_SHAPES)
_DEMO_NAME_BY_ID = {_CAT_ID_BY_NAME[name]: name for name in _DEMO_NAMES}

# Split name -> (image folder / annotation suffix, seed stream id). The seed
# stream id keeps the two splits' random streams independent, so e.g. the
# val images do not change when ``num_train`` changes.
_SPLITS = (('train', 'train2017', 0), ('val', 'val2017', 1))

# Object bounding-box side range in pixels: 10..64 spans COCO "small"
# (area < 32**2) and "medium" objects.
_MIN_OBJ_SIZE = 10
_MAX_OBJ_SIZE = 64
_MAX_OBJECTS = 4
# Placement attempts per object before giving up on it (rejection sampling
# against overlaps); the first object always fits an empty image.
_PLACE_TRIES = 30
# Empty gap kept between objects and to the image border, so masks never
# touch and every instance is fully visible.
_GAP = 2
# Vertices of the disc polygon: with radius <= 32 px the polygon deviates
# from a true circle by < 0.2 px.
_DISC_VERTICES = 32
# Minimum Euclidean RGB distance between an object and its local background.
_MIN_CONTRAST = 120.0
_COLOUR_TRIES = 16
# Fixed PNG settings: same arguments must give byte-identical files.
_PNG_PARAMS = [cv2.IMWRITE_PNG_COMPRESSION, 6]
# Value of unlabelled pixels in the semantic maps (COCO-stuff convention,
# and the ``ignore_label`` of HTC's semantic head).
_SEG_IGNORE = 255

_Box = Tuple[int, int, int, int]  # x1, y1, x2, y2 in pixels

_LIMITS = {
    'num_train': (1, 100000),
    'num_val': (1, 100000),
    'image_size': (32, 2048),
    'seed': (0, 2**32 - 1),
}


def _check_int(name: str, value: Any) -> int:
    """Validate an integer argument against ``_LIMITS``.

    Args:
        name (str): Argument name, used in the error message.
        value (Any): The value to check.

    Returns:
        int: The value as a plain ``int``.

    Raises:
        ValueError: If the value is not an integer in the allowed range.
    """
    low, high = _LIMITS[name]
    # bool is an int subclass but ``image_size=True`` is certainly a mistake.
    is_bool = isinstance(value, (bool, np.bool_))
    is_int = isinstance(value, (int, np.integer)) and not is_bool
    if not is_int or not low <= value <= high:
        raise ValueError(f'{name} must be an integer in [{low}, {high}], '
                         f'got {value!r}')
    return int(value)


def _dump_json(obj: Any, path: str) -> None:
    """Write JSON with a fixed, sorted formatting (byte-reproducible)."""
    with open(path, 'w', encoding='utf-8') as f:
        json.dump(obj, f, sort_keys=True, separators=(',', ':'))
        f.write('\n')


def _write_png(path: str, array: np.ndarray) -> None:
    """Encode ``array`` as PNG with fixed settings and write it."""
    ok, buf = cv2.imencode('.png', array, _PNG_PARAMS)
    if not ok:  # pragma: no cover - only on a broken OpenCV build
        raise RuntimeError(f'failed to encode {path}')
    with open(path, 'wb') as f:
        f.write(buf.tobytes())


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """Make a smooth random background: a linear colour gradient + noise.

    Args:
        rng (np.random.Generator): Random generator of this image.
        size (int): Image side in pixels.

    Returns:
        np.ndarray: float32 RGB image of shape (size, size, 3) in [0, 255].
    """
    start = rng.uniform(0, 255, size=3)
    end = rng.uniform(0, 255, size=3)
    angle = rng.uniform(0, 2 * np.pi)
    coords = np.arange(size, dtype=np.float32) / max(size - 1, 1)
    # Project pixel coordinates on a random direction, normalised to [0, 1].
    proj = (np.cos(angle) * coords[None, :] + np.sin(angle) * coords[:, None])
    proj = (proj - proj.min()) / max(float(np.ptp(proj)), 1e-6)
    image = start + (end - start) * proj[..., None]
    image += rng.normal(0.0, 6.0, size=image.shape)
    return np.clip(image, 0, 255).astype(np.float32)


def _shape_polygon(rng: np.random.Generator, shape: str, x0: int, y0: int,
                   side: int) -> Tuple[List[float], int, int]:
    """Build the polygon of one shape inside a ``side`` x ``side`` box.

    Args:
        rng (np.random.Generator): Random generator of this image.
        shape (str): One of the values of ``DEMO_SHAPES``.
        x0 (int): Left edge of the box.
        y0 (int): Top edge of the box.
        side (int): Box side in pixels.

    Returns:
        tuple[list[float], int, int]: Flat polygon ``[x1, y1, x2, y2, ...]``
        rounded to 2 decimals (the JSON holds exactly what is rasterised),
        and the width and height of the box the shape occupies.
    """
    if shape == 'disc':
        radius = side / 2
        theta = np.arange(_DISC_VERTICES) * (2 * np.pi / _DISC_VERTICES)
        xs = x0 + radius + radius * np.cos(theta)
        ys = y0 + radius + radius * np.sin(theta)
        width = height = side
    elif shape == 'triangle':
        # Base on one horizontal edge of the box, apex anywhere on the
        # opposite edge; flipping gives both pointing-up and -down kites.
        apex_x = x0 + rng.uniform(0.0, 1.0) * side
        base_y, apex_y = (y0 + side, y0) if rng.random() < 0.5 else (y0,
                                                                     y0 + side)
        xs = np.array([x0, x0 + side, apex_x])
        ys = np.array([base_y, base_y, apex_y])
        width = height = side
    elif shape == 'rectangle':
        # Long side = ``side``; the aspect ratio varies like real screens.
        short = max(_MIN_OBJ_SIZE // 2,
                    int(round(side * rng.uniform(0.55, 1.0))))
        width, height = (side, short) if rng.random() < 0.5 else (short, side)
        xs = np.array([x0, x0 + width, x0 + width, x0])
        ys = np.array([y0, y0, y0 + height, y0 + height])
    else:  # pragma: no cover - DEMO_SHAPES only holds the shapes above
        raise ValueError(f'unknown shape {shape!r}')
    poly = np.round(np.stack([xs, ys], axis=1).reshape(-1), 2)
    return [float(v) for v in poly], width, height


def _pick_colour(rng: np.random.Generator,
                 local_mean: np.ndarray) -> np.ndarray:
    """Pick a random solid colour that contrasts with the local background.

    Args:
        rng (np.random.Generator): Random generator of this image.
        local_mean (np.ndarray): Mean RGB of the background under the object.

    Returns:
        np.ndarray: float32 RGB colour.
    """
    best, best_dist = None, -1.0
    for _ in range(_COLOUR_TRIES):
        colour = rng.integers(0, 256, size=3).astype(np.float32)
        dist = float(np.linalg.norm(colour - local_mean))
        if dist >= _MIN_CONTRAST:
            return colour
        if dist > best_dist:
            best, best_dist = colour, dist
    return best


def _decode(rle: dict) -> np.ndarray:
    """Decode a COCO RLE into a boolean mask.

    pycocotools built against numpy < 2 emits a DeprecationWarning (about
    ``__array__`` and ``copy``) on every decode; it is harmless here but
    would flood the output (or fail under ``-W error``), so only that
    warning is silenced.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings(
            'ignore',
            message='__array__ implementation',
            category=DeprecationWarning)
        return mask_utils.decode(rle).astype(bool)


def _too_close(box_a: _Box, box_b: _Box) -> bool:
    """Whether two ``(x1, y1, x2, y2)`` boxes are closer than ``_GAP``.

    Keeping boxes apart (not just masks) means instance masks never overlap
    or touch, so the semantic map is unambiguous and boxes stay separable.
    """
    return not (box_a[0] >= box_b[2] + _GAP or box_b[0] >= box_a[2] + _GAP
                or box_a[1] >= box_b[3] + _GAP or box_b[1] >= box_a[3] + _GAP)


def _make_image(seed: int, stream: int, index: int,
                image_size: int) -> Tuple[np.ndarray, np.ndarray, List[dict]]:
    """Draw one image, its semantic map and its (image-less) annotations.

    Each image has its own generator derived from ``(seed, stream, index)``,
    so an image depends only on those and not on how many images precede it.

    Args:
        seed (int): Global seed.
        stream (int): Split stream id (see ``_SPLITS``).
        index (int): Image index within the split.
        image_size (int): Image side in pixels.

    Returns:
        tuple[np.ndarray, np.ndarray, list[dict]]: uint8 RGB image, uint8
        semantic map and the annotations (without ``id`` / ``image_id``).
    """
    rng = np.random.default_rng([seed, stream, index])
    image = _background(rng, image_size)
    semantic = np.full((image_size, image_size), _SEG_IGNORE, dtype=np.uint8)
    max_side = min(_MAX_OBJ_SIZE, image_size - 2 * _GAP)
    num_objects = int(rng.integers(1, _MAX_OBJECTS + 1))
    placed: List[_Box] = []  # x1, y1, x2, y2
    anns = []
    for _ in range(num_objects):
        name = _DEMO_NAMES[int(rng.integers(len(_DEMO_NAMES)))]
        side = int(rng.integers(_MIN_OBJ_SIZE, max_side + 1))
        for _ in range(_PLACE_TRIES):
            x0 = int(rng.integers(_GAP, image_size - _GAP - side + 1))
            y0 = int(rng.integers(_GAP, image_size - _GAP - side + 1))
            poly, width, height = _shape_polygon(rng, DEMO_SHAPES[name], x0,
                                                 y0, side)
            box = (x0, y0, x0 + width, y0 + height)
            if not any(_too_close(box, other) for other in placed):
                break
        else:
            continue  # no free spot for this object; drop it
        placed.append(box)
        # Rasterise exactly like COCO's annToMask / mmdet's PolygonMasks, and
        # use this single raster for the pixels, semantic map, bbox and area
        # so that every representation of the instance agrees.
        rle = mask_utils.merge(
            mask_utils.frPyObjects([poly], image_size, image_size))
        mask = _decode(rle)
        local_mean = image[mask].mean(axis=0)
        image[mask] = _pick_colour(rng, local_mean)
        semantic[mask] = _CAT_ID_BY_NAME[name] - 1
        anns.append(
            dict(
                category_id=_CAT_ID_BY_NAME[name],
                bbox=[float(v) for v in mask_utils.toBbox(rle)],
                segmentation=[poly],
                area=float(mask_utils.area(rle)),
                iscrowd=0))
    return np.round(image).astype(np.uint8), semantic, anns


def _generate_split(root: str, split: str, folder: str, stream: int,
                    num_images: int, image_size: int,
                    seed: int) -> Dict[str, Any]:
    """Generate one split into ``root`` and return its statistics."""
    img_dir = osp.join(root, folder)
    seg_dir = osp.join(root, 'stuffthingmaps', folder)
    os.makedirs(img_dir)
    os.makedirs(seg_dir)
    images, annotations = [], []
    per_category = {name: 0 for name in _DEMO_NAMES}
    for index in range(num_images):
        image_id = index + 1
        file_name = f'{image_id:012d}.png'
        image, semantic, anns = _make_image(seed, stream, index, image_size)
        # cv2 writes BGR; the PNG must hold RGB.
        _write_png(osp.join(img_dir, file_name), image[..., ::-1])
        _write_png(osp.join(seg_dir, file_name), semantic)
        images.append(
            dict(
                id=image_id,
                file_name=file_name,
                width=image_size,
                height=image_size,
                license=1))
        for ann in anns:
            ann.update(id=len(annotations) + 1, image_id=image_id)
            annotations.append(ann)
            per_category[_DEMO_NAME_BY_ID[ann['category_id']]] += 1
    coco = dict(
        info=dict(
            description=('Res2Net demo dataset: synthetic COCO-format '
                         f'{split} split (sports ball = disc, kite = '
                         'triangle, tv = rectangle)'),
            version=str(FORMAT_VERSION),
            year=2024,
            contributor=GENERATOR,
            url='',
            # Fixed rather than "now": output must be byte-reproducible.
            date_created='2024-01-01'),
        licenses=[
            dict(
                id=1,
                name='CC0 1.0 (synthetic data)',
                url='https://creativecommons.org/publicdomain/zero/1.0/')
        ],
        images=images,
        annotations=annotations,
        categories=[dict(cat) for cat in COCO_CATEGORIES])
    _dump_json(coco, osp.join(root, 'annotations', f'instances_{folder}.json'))
    return dict(
        images=num_images,
        instances=len(annotations),
        per_category=per_category,
        img_dir=folder,
        seg_dir=osp.join('stuffthingmaps', folder),
        ann_file=osp.join('annotations', f'instances_{folder}.json'))


def _read_manifest(out_dir: str) -> Optional[dict]:
    """Return the manifest of an existing dataset, or None if unusable."""
    try:
        with open(osp.join(out_dir, MANIFEST_NAME), encoding='utf-8') as f:
            manifest = json.load(f)
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) else None


def _is_complete(out_dir: str, manifest: dict) -> bool:
    """Cheap sanity check that the files the manifest promises exist."""
    try:
        for stats in manifest['splits'].values():
            if not osp.isfile(osp.join(out_dir, stats['ann_file'])):
                return False
            for key in ('img_dir', 'seg_dir'):
                if len(os.listdir(osp.join(out_dir,
                                           stats[key]))) != stats['images']:
                    return False
    except (OSError, KeyError, TypeError, AttributeError):
        return False
    return True


def _summary(out_dir: str, manifest: dict, generated: bool) -> dict:
    """Build the public summary with absolute paths."""
    splits = {}
    for split, stats in manifest['splits'].items():
        stats = dict(stats)
        for key in ('img_dir', 'seg_dir', 'ann_file'):
            stats[key] = osp.join(out_dir, stats[key])
        # JSON sorted the keys; restore the DEMO_SHAPES order so fresh and
        # up-to-date summaries look the same.
        stats['per_category'] = {
            name: stats['per_category'][name]
            for name in _DEMO_NAMES
        }
        splits[split] = stats
    return dict(
        out_dir=out_dir,
        manifest=osp.join(out_dir, MANIFEST_NAME),
        status='generated' if generated else 'up-to-date',
        generated=generated,
        params=dict(manifest['params']),
        splits=splits)


def _remove(path: str) -> None:
    if osp.isdir(path) and not osp.islink(path):
        shutil.rmtree(path)
    else:
        os.remove(path)


def generate_demo_dataset(out_dir: str,
                          *,
                          num_train: int = 600,
                          num_val: int = 100,
                          image_size: int = 128,
                          seed: int = 0,
                          force: bool = False) -> Dict[str, Any]:
    """Generate the synthetic COCO-format demo dataset (idempotently).

    Same arguments give byte-identical files. The dataset is built in a
    temporary sibling directory and renamed into place at the end, so an
    interrupted run never leaves a half-written ``out_dir``. A manifest
    (``demo_data.json``) records the parameters: if ``out_dir`` already holds
    a complete dataset with the same parameters nothing is written.

    Args:
        out_dir (str): Output directory (the future ``data_root``).
        num_train (int): Number of training images. Defaults to 600.
        num_val (int): Number of validation images. Defaults to 100.
        image_size (int): Side of the square images in pixels, >= 32 (the
            ``min_size`` filter of MMDetection's COCO configs). Defaults to
            128.
        seed (int): Random seed. Defaults to 0.
        force (bool): Replace an existing ``out_dir`` that was made with
            other parameters or is not a demo dataset. Defaults to False.

    Returns:
        dict: Summary with keys ``out_dir``, ``manifest``, ``status``
        (``'generated'`` or ``'up-to-date'``), ``generated`` (bool),
        ``params`` and ``splits``; ``splits['train' | 'val']`` holds
        ``images``, ``instances``, ``per_category`` (name -> instances) and
        the absolute ``img_dir``, ``seg_dir`` and ``ann_file``.

    Raises:
        ValueError: If an argument is out of its allowed range.
        FileExistsError: If ``out_dir`` exists, is not an up-to-date demo
            dataset, and ``force`` is False.

    Example:
        >>> summary = generate_demo_dataset('data/demo')  # doctest: +SKIP
        >>> summary['splits']['val']['ann_file']  # doctest: +SKIP
        'data/demo/annotations/instances_val2017.json'
    """
    params = dict(
        num_train=_check_int('num_train', num_train),
        num_val=_check_int('num_val', num_val),
        image_size=_check_int('image_size', image_size),
        seed=_check_int('seed', seed))
    out_dir = osp.normpath(os.fspath(out_dir))

    if osp.lexists(out_dir):
        manifest = _read_manifest(out_dir)
        if (manifest is not None
                and manifest.get('format_version') == FORMAT_VERSION
                and manifest.get('params') == params
                and _is_complete(out_dir, manifest)):
            return _summary(out_dir, manifest, generated=False)
        # An empty directory (e.g. made by ``mkdir -p``) holds nothing to
        # lose, so it is treated like a missing one.
        is_empty_dir = (
            osp.isdir(out_dir) and not osp.islink(out_dir)
            and not os.listdir(out_dir))
        if not force and not is_empty_dir:
            what = ('a demo dataset with different parameters'
                    if manifest is not None else 'not an up-to-date demo '
                    'dataset')
            raise FileExistsError(
                f'{out_dir} already exists and is {what}; pass --force '
                '(force=True) to overwrite it')

    parent = osp.dirname(osp.abspath(out_dir))
    os.makedirs(parent, exist_ok=True)
    # Sibling of out_dir: same file system, so the final rename is atomic.
    tmp_dir = tempfile.mkdtemp(
        prefix=f'.{osp.basename(out_dir)}.tmp-', dir=parent)
    try:
        os.makedirs(osp.join(tmp_dir, 'annotations'))
        splits = {}
        for split, folder, stream in _SPLITS:
            splits[split] = _generate_split(tmp_dir, split, folder, stream,
                                            params[f'num_{split}'],
                                            params['image_size'],
                                            params['seed'])
        manifest = dict(
            format_version=FORMAT_VERSION,
            generator=GENERATOR,
            params=params,
            categories=dict(DEMO_SHAPES),
            splits=splits)
        # The manifest is written last: a directory with a manifest is
        # always complete.
        _dump_json(manifest, osp.join(tmp_dir, MANIFEST_NAME))
        # mkdtemp creates 0700 directories; give the dataset normal
        # permissions so it can be shared like any other data directory.
        os.chmod(tmp_dir, 0o755)

        if osp.lexists(out_dir):
            # Directories cannot be os.replace()d over non-empty ones, so
            # move the old one aside first and delete it only afterwards.
            trash = tempfile.mkdtemp(
                prefix=f'.{osp.basename(out_dir)}.old-', dir=parent)
            old = osp.join(trash, 'old')
            os.rename(out_dir, old)
            os.rename(tmp_dir, out_dir)
            shutil.rmtree(trash)
        else:
            try:
                os.rename(tmp_dir, out_dir)
            except OSError:
                # A concurrent run may have finished first; accept its result
                # if it is what we were asked to make.
                other = _read_manifest(out_dir)
                if (other is not None and other.get('params') == params
                        and other.get('format_version') == FORMAT_VERSION):
                    return _summary(out_dir, other, generated=False)
                raise
    finally:
        if osp.lexists(tmp_dir):
            _remove(tmp_dir)
    return _summary(out_dir, manifest, generated=True)
