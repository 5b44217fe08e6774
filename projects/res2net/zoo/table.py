# Copyright (c) Res2Net-MMDet contributors. All rights reserved.
"""Model-zoo rows: the reference results, and rows read from our own runs.

A row is what MMDetection's model-zoo tables show: Backbone, Style, Lr schd,
Mem (GB), Inf time (fps), box AP, mask AP, Config, Download. The reference
rows (:data:`REFERENCE`) are the MMDetection model zoo's published Res2Net
results. :func:`read_run` builds a row from a work dir, from what the tools
wrote there and nothing else: a number that is not there stays ``None`` and
the reason is recorded, so a table never shows a made-up value.

:func:`format_speed_table` is the other table: the speed of each config as
``benchmark.py`` measured it, one row per ``benchmark.json``, each with its
device (docs/speed.md holds it for this project's CPU).
"""
import dataclasses
import glob
import json
import os.path as osp
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import yaml
from mmengine.config import Config

from ..datasets.demo_data import MANIFEST_NAME
from ..engine.fileio import write_text
from ..engine.logs import read_scalars, run_dirs, scalars_path
from ..errors import UserError
from ..paths import BENCHMARK_JSON, METRICS_JSON
from .publish import published_file

_ZOO_URL = 'https://download.openmmlab.com/mmdetection/v2.0/res2net'
PAPER = dict(
    Title='Res2Net: A New Multi-scale Backbone Architecture',
    URL='https://arxiv.org/abs/1904.01169')


@dataclass(frozen=True)
class Row:
    """One line of a model-zoo table (numbers in the table's units)."""

    name: str  # the config's file name without .py
    backbone: str
    style: str
    schedule: str  # '2x', '20e', '500 iters'
    epochs: Optional[int]
    iterations: Optional[int]
    memory_gb: Optional[float]
    # The "Inf time (fps)" cell. A reference row shows the zoo's value
    # there (none published) or one measured on a GPU, never a CPU's (see
    # reference_rows); its ms_per_image still goes into the metafile.
    fps: Optional[float]
    box_ap: Optional[float]  # COCO AP x 100, as the zoo prints it
    mask_ap: Optional[float]
    config: str
    weights: Optional[str]
    log: Optional[str] = None
    ms_per_image: Optional[float] = None
    # Where and how the fps were measured (benchmark.json of benchmark.py).
    hardware: Optional[str] = None
    device: Optional[str] = None  # benchmark.json's 'cpu' or 'cuda'
    input_shape: Optional[Tuple[int, int]] = None  # padded (height, width)
    # How the model ran, where not eager fp32: 'fp16', 'fused BN', ...
    speed_options: Tuple[str, ...] = ()
    dataset: str = 'COCO'
    # Why a number is missing, by column: shown on stderr, never invented.
    missing: Dict[str, str] = field(default_factory=dict, compare=False)


def _reference(name: str, schedule: str, epochs: int,
               memory_gb: Optional[float], box_ap: float,
               mask_ap: Optional[float], checkpoint: str, log: str) -> Row:
    return Row(
        name=name,
        backbone='R2-101',
        style='pytorch',
        schedule=schedule,
        epochs=epochs,
        iterations=None,
        memory_gb=memory_gb,
        fps=None,
        box_ap=box_ap,
        mask_ap=mask_ap,
        config=f'configs/{name}.py',
        weights=f'{_ZOO_URL}/{name}_coco/{name}_coco-{checkpoint}.pth',
        log=f'{_ZOO_URL}/{name}_coco/{name}_coco_{log}.log.json')


# MMDetection's model zoo (COCO val2017, 8 GPUs x 2 images, its
# configs/res2net/README.md and metafile.yml, checkpoints and logs); its
# "Inf time (fps)" for these is "-".
REFERENCE: Sequence[Row] = (
    _reference('faster_rcnn_r2_101_fpn_2x', '2x', 24, 7.4, 43.0, None,
               '175f1da6', '20200514_231734'),
    _reference('mask_rcnn_r2_101_fpn_2x', '2x', 24, 7.9, 43.6, 38.7,
               '17f061e8', '20200515_002413'),
    _reference('cascade_rcnn_r2_101_fpn_20e', '20e', 20, 7.8, 45.7, None,
               'f4b7b7db', '20200515_091644'),
    _reference('cascade_mask_rcnn_r2_101_fpn_20e', '20e', 20, 9.5, 46.4, 40.0,
               '8a7b41e1', '20200515_091645'),
    _reference('htc_r2_101_fpn_20e', '20e', 20, None, 47.5, 41.6, '3a8d2112',
               '20200515_150029'),
)

COLUMNS = ('Backbone', 'Style', 'Lr schd', 'Mem (GB)', 'Inf time (fps)',
           'box AP', 'mask AP', 'Config', 'Download')
# The numeric columns: Row field, decimals, as the model zoo prints them.
_NUMBERS = {
    'Mem (GB)': ('memory_gb', 1),
    'Inf time (fps)': ('fps', None),  # see _format
    'box AP': ('box_ap', 1),
    'mask AP': ('mask_ap', 1),
}
DEMO_DATASET = 'demo data'


def _schedule(train_cfg: Mapping) -> Dict[str, Any]:
    """Lr schd label, epochs and iterations of a ``train_cfg``."""
    if 'max_epochs' in train_cfg:
        epochs = int(train_cfg['max_epochs'])
        label = {12: '1x', 24: '2x', 36: '3x'}.get(epochs, f'{epochs}e')
        return dict(schedule=label, epochs=epochs, iterations=None)
    iters = int(train_cfg['max_iters'])
    return dict(schedule=f'{iters} iters', epochs=None, iterations=iters)


def _backbone(backbone: Mapping) -> str:
    """'R2-101' as the zoo names it; a non-standard width is spelled out."""
    depth = backbone.get('depth')
    if backbone.get('type') == 'Res2NetBackbone':
        label = f'R2-{depth}'
        shape = (backbone.get('base_width', 26), backbone.get('scales', 4),
                 backbone.get('base_channels', 64))
        if shape != (26, 4, 64):
            label += f' ({shape[0]}w×{shape[1]}s, {shape[2]} ch)'
        return label
    if backbone.get('type') == 'ResNet':
        return f'R-{depth}'
    return f'{backbone.get("type")}-{depth}' if depth else backbone['type']


def _runs(work_dir: str) -> List[str]:
    """The Runner's ``<timestamp>`` dirs of a work dir, oldest first."""
    return run_dirs(work_dir, 'config.py')


def _read_scalars(run: str) -> List[dict]:
    """The scalar log of a ``<timestamp>`` dir; none for a test run."""
    path = scalars_path(run)
    if not osp.isfile(path):
        return []
    return read_scalars(
        path, fix='mend or delete that line, or pass another work dir')


def _dataset(cfg: Config) -> str:
    """'COCO', or the demo data when the data root holds its manifest."""
    root = cfg.get('data_root') or ''
    return DEMO_DATASET if osp.isfile(osp.join(root, MANIFEST_NAME)) else \
        'COCO'


def read_run(work_dir: str) -> Row:
    """A table row from a work dir of ``tools/train.py``/``tools/test.py``.

    Reads: the newest training run's dumped config and scalar log (peak
    ``memory``, which mmengine logs on CUDA only), ``metrics.json`` of
    ``tools/test.py`` (AP, and the checkpoint it tested) and
    ``benchmark.json`` of ``tools/analysis_tools/benchmark.py`` (fps).

    Raises:
        UserError: ``work_dir`` is not a directory or holds neither a
            training run nor a test result.
    """
    if not osp.isdir(work_dir):
        raise UserError(f'work dir not found: {work_dir}; pass the '
                        '--work-dir of tools/train.py and tools/test.py')
    missing: Dict[str, str] = {}
    runs = _runs(work_dir)
    logs = {run: _read_scalars(run) for run in runs}
    trained = [run for run in runs if any('loss' in x for x in logs[run])]
    metrics_path = osp.join(work_dir, METRICS_JSON)
    test = None
    if osp.isfile(metrics_path):
        with open(metrics_path, encoding='utf-8') as f:
            test = json.load(f)
    if not trained and test is None:
        raise UserError(
            f'{work_dir}: no training log and no metrics.json; run '
            f'tools/train.py and tools/test.py with --work-dir {work_dir}')
    run = trained[-1] if trained else runs[-1]
    cfg = Config.fromfile(osp.join(run, 'vis_data', 'config.py'))

    memory = None
    if not trained:
        missing['Mem (GB)'] = f'{work_dir} has no training log'
    else:
        peaks = [x['memory'] for x in logs[run] if 'memory' in x]
        if peaks:
            memory = round(max(peaks) / 1024, 1)
        else:
            missing['Mem (GB)'] = (
                f'{run}: the training log has no memory (mmengine logs GPU '
                'memory only; this run trained on the CPU)')

    speed = read_speed(work_dir, missing)
    metric = cfg.get('test_evaluator', {}).get('metric', 'bbox')
    tasks = [metric] if isinstance(metric, str) else list(metric)
    aps: Dict[str, Optional[float]] = {'bbox': None, 'segm': None}
    for task, column in (('bbox', 'box AP'), ('segm', 'mask AP')):
        if task not in tasks:
            continue
        if test is None:
            missing[column] = (f'no metrics.json in {work_dir}; run '
                               'tools/test.py CONFIG CHECKPOINT '
                               f'--work-dir {work_dir}')
        elif f'coco/{task}_mAP' not in test['metrics']:
            missing[column] = (f'{metrics_path} has no coco/{task}_mAP '
                               '(no detections above the score threshold)')
        else:
            aps[task] = round(100 * test['metrics'][f'coco/{task}_mAP'], 1)

    if test is not None:
        # The published file where the tested checkpoint was published.
        weights = published_file(test['checkpoint']) or test['checkpoint']
    else:
        last = osp.join(work_dir, 'last_checkpoint')
        weights = None
        if osp.isfile(last):
            with open(last, encoding='utf-8') as f:
                weights = f.read().strip()
    # Without a test, the config that the Runner dumped into the work dir.
    config = test['config'] if test else \
        (sorted(glob.glob(osp.join(work_dir, '*.py'))) or [work_dir])[0]
    name = osp.splitext(osp.basename(config))[0]
    stamp = osp.basename(run)
    return Row(
        name=name,
        **_described(cfg),
        memory_gb=memory,
        **speed,
        box_ap=aps['bbox'],
        mask_ap=aps['segm'],
        config=config,
        weights=weights,
        log=osp.join(run, f'{stamp}.log') if trained else None,
        missing=missing)


def _described(cfg: Config) -> Dict[str, Any]:
    """The fields of a :class:`Row` that the config alone gives."""
    return dict(
        backbone=_backbone(cfg.model.backbone),
        style=cfg.model.backbone.get('style', 'pytorch'),
        **_schedule(cfg.train_cfg),
        dataset=_dataset(cfg))


def unfinished_row(config: str, cfg: Config, why: str) -> Row:
    """The row of a run that did not finish: every number "–", ``why``.

    Nothing of a cut-off run is shown, not even its last checkpoint: the
    row says what was meant to be run, and stderr says why it is empty.
    """
    missing = {'every number': why}
    return Row(
        name=osp.splitext(osp.basename(config))[0],
        **_described(cfg),
        memory_gb=None,
        fps=None,
        box_ap=None,
        mask_ap=None,
        config=config,
        weights=None,
        missing=missing)


def read_speed(work_dir: str, missing: Dict[str, str]) -> Dict[str, Any]:
    """The speed fields of a :class:`Row` from ``WORK_DIR/benchmark.json``.

    Without the file they are ``None`` and ``missing`` says why.
    """
    path = osp.join(work_dir, BENCHMARK_JSON)
    if not osp.isfile(path):
        missing['Inf time (fps)'] = (
            f'no benchmark.json in {work_dir}; run '
            'tools/analysis_tools/benchmark.py CONFIG CHECKPOINT '
            f'--work-dir {work_dir}')
        return dict(fps=None, ms_per_image=None)
    with open(path, encoding='utf-8') as f:
        bench = json.load(f)
    try:
        shape = bench.get('input_shape')
        return dict(
            fps=float(bench['fps']),
            ms_per_image=float(bench['ms_per_image']),
            hardware=bench.get('hardware'),
            device=bench.get('device'),
            input_shape=tuple(shape) if shape else None,
            speed_options=tuple(label for key, label in _SPEED_OPTIONS
                                if bench.get(key)))
    except (KeyError, TypeError, ValueError) as e:
        raise UserError(f'{path} is not a benchmark.json of '
                        f'tools/analysis_tools/benchmark.py ({e!r}); run '
                        'it again with --work-dir ' + work_dir) from e


# benchmark.json's switches and how the table labels them.
_SPEED_OPTIONS = (('amp', 'fp16'), ('fuse_conv_bn', 'fused BN'),
                  ('channels_last', 'channels-last'), ('compile', 'compiled'))


def reference_rows(speed_dir: Optional[str] = None) -> List[Row]:
    """:data:`REFERENCE`, with the speed measured by ``benchmark.py``.

    The table keeps the zoo's own columns: its "Inf time (fps)" is a GPU's
    (mmdet's zoo leaves it empty for these models), so a speed measured on
    a GPU fills it, labelled with the GPU, and one measured on the CPU does
    not (stderr says where it is shown: :func:`format_speed_table`). Either
    goes into the metafile with its device (:func:`update_metafile`).

    Args:
        speed_dir: a dir holding ``<config name>/benchmark.json`` per
            reference config (``benchmark.py CONFIG --work-dir
            SPEED_DIR/<config name>``). Without it the column stays "–".
    """
    if speed_dir is None:
        return list(REFERENCE)
    if not osp.isdir(speed_dir):
        raise UserError(f'speed dir not found: {speed_dir}; pass the dir '
                        'whose <config name>/benchmark.json benchmark.py '
                        'wrote')
    rows = []
    for row in REFERENCE:
        missing: Dict[str, str] = {}
        speed = read_speed(osp.join(speed_dir, row.name), missing)
        if speed['fps'] is not None and speed.get('device') in (None, 'cpu'):
            path = osp.join(speed_dir, row.name, BENCHMARK_JSON)
            missing['Inf time (fps)'] = (
                f'{path} was measured on {speed.get("hardware") or "the CPU"}'
                ", not a GPU as the zoo's column; its fps are in the table of "
                f'benchmark_table.py --speed-table {speed_dir}, its ms/image '
                'in the metafile with its device')
            speed['fps'] = None
        rows.append(dataclasses.replace(row, missing=missing, **speed))
    return rows


SPEED_COLUMNS = ('config', 'fps', 'ms/image', 'peak memory (MB)',
                 'input (padded)', 'device')


def speed_results(speed_dir: str) -> List[Dict[str, Any]]:
    """Every ``SPEED_DIR/<config name>/benchmark.json``, read as written:
    the reference configs first, in :data:`REFERENCE`'s order, then the
    others by name.

    Raises:
        UserError: ``speed_dir`` is not a dir, holds no ``benchmark.json``,
            or one that ``benchmark.py`` did not write.
    """
    if not osp.isdir(speed_dir):
        raise UserError(f'speed dir not found: {speed_dir}; pass the dir '
                        'whose <config name>/benchmark.json benchmark.py '
                        'wrote')
    paths = sorted(glob.glob(osp.join(speed_dir, '*', BENCHMARK_JSON)))
    if not paths:
        raise UserError(f'no <config name>/benchmark.json in {speed_dir}; '
                        'run tools/analysis_tools/benchmark.py CONFIG '
                        f'--work-dir {speed_dir}/<config name>')
    order = {row.name: i for i, row in enumerate(REFERENCE)}
    paths.sort(
        key=lambda p: (order.get(osp.basename(osp.dirname(p)), len(order)), p))
    results = []
    for path in paths:
        with open(path, encoding='utf-8') as f:
            bench = json.load(f)
        if not all(
                key in bench
                for key in ('config', 'fps', 'ms_per_image', 'hardware')):
            raise UserError(f'{path} is not a benchmark.json of '
                            'tools/analysis_tools/benchmark.py; run it again '
                            f'with --work-dir {osp.dirname(path)}')
        results.append(bench)
    return results


def _speed_cells(bench: Mapping[str, Any]) -> List[str]:
    shape = bench.get('input_shape')
    memory = bench.get('peak_memory_mb')
    options = [label for key, label in _SPEED_OPTIONS if bench.get(key)]
    return [
        f'`{bench["config"]}`',
        _format(float(bench['fps']), None),
        f'{float(bench["ms_per_image"]):.0f}',
        '–' if memory is None else f'{float(memory):.0f}',
        '×'.join(map(str, shape)) if shape else '–',
        ', '.join((bench['hardware'], *options)),
    ]


def format_speed_table(speed_dir: str) -> str:
    """The markdown table of :func:`speed_results`: per config, fps and
    ms/image as ``benchmark.py`` measured them (batch 1), its peak memory,
    the padded input (height×width) and the device, with the form the
    model ran in where it was not eager fp32."""
    lines = [
        '| ' + ' | '.join(SPEED_COLUMNS) + ' |',
        '|' + '---|' * len(SPEED_COLUMNS),
    ]
    lines += [
        '| ' + ' | '.join(_speed_cells(bench)) + ' |'
        for bench in speed_results(speed_dir)
    ]
    return '\n'.join(lines)


def missing_lines(rows: Sequence[Row]) -> List[str]:
    """Why each "–" of ``rows`` is empty: a line per row and column."""
    return [
        f'{row.name}: {column} –: {why}' for row in rows
        for column, why in row.missing.items()
    ]


def _link(text: str, target: Optional[str]) -> str:
    if not target:
        return ''
    if '://' in target:
        return f'[{text}]({target})'
    return f'{text}: `{target}`'


def _format(value: Optional[float], decimals: Optional[int]) -> str:
    """A number as the zoo prints it; fps below 10 (CPUs) gets 2 decimals."""
    if value is None:
        return '–'
    if decimals is None:
        decimals = 1 if value >= 10 else 2
    return f'{value:.{decimals}f}'


def _cells(row: Row, reference: Optional[Row]) -> List[str]:
    cells = [row.backbone, row.style, row.schedule]
    for attr, decimals in _NUMBERS.values():
        value = getattr(row, attr)
        cell = _format(value, decimals)
        if attr == 'fps' and value is not None and row.hardware:
            # Speeds are only comparable on one device: each names its own.
            cell += f' ({", ".join((row.hardware, *row.speed_options))})'
        if reference is not None:
            ref = getattr(reference, attr)
            if ref is None:
                cell += ' (ref –)'
            elif value is None:
                cell += f' (ref {_format(ref, decimals)})'
            else:
                cell += (f' (ref {_format(ref, decimals)}, '
                         f'Δ {value - ref:+.{decimals or 1}f})')
        cells.append(cell)
    cells.append(f'[{row.name}]({row.config})')
    download = ' \\| '.join(
        part for part in (_link('model', row.weights), _link('log', row.log))
        if part)
    cells.append(download or '–')
    return cells


def format_table(rows: Sequence[Row], *, compare: bool = False) -> str:
    """The model-zoo markdown table of ``rows``.

    With ``compare``, each number is followed by the reference value of the
    same config (by name) and the difference.
    """
    references = {row.name: row for row in REFERENCE}
    lines = [
        '| ' + ' | '.join(COLUMNS) + ' |',
        '|' + '---|' * len(COLUMNS),
    ]
    for row in rows:
        reference = references.get(row.name) if compare else None
        lines.append('| ' + ' | '.join(_cells(row, reference)) + ' |')
    return '\n'.join(lines)


def _model_entry(row: Row, collection: str) -> Dict[str, Any]:
    """One ``Models`` entry of OpenMMLab's model-index format."""
    metadata: Dict[str, Any] = {'Training Data': row.dataset}
    if row.memory_gb is not None:
        metadata['Training Memory (GB)'] = row.memory_gb
    if row.epochs is not None:
        metadata['Epochs'] = row.epochs
    if row.iterations is not None:
        metadata['Iterations'] = row.iterations
    if row.ms_per_image is not None and row.hardware:
        # mmdet's metafile fields; a time without its device is left out.
        options = [o for o in row.speed_options if o != 'fp16']
        timing: Dict[str, Any] = {
            'value': round(row.ms_per_image, 2),
            'hardware': row.hardware,
            'backend':
            'PyTorch' + (f' ({", ".join(options)})' if options else ''),
            'batch size': 1,
            'mode': 'FP16' if 'fp16' in row.speed_options else 'FP32',
        }
        if row.input_shape:
            # The padded input, (height, width) as mmdet's (800, 1333).
            timing['resolution'] = '({}, {})'.format(*row.input_shape)
        metadata['inference time (ms/im)'] = [timing]
    results = []
    for task, metric, value in (('Object Detection', 'box AP', row.box_ap),
                                ('Instance Segmentation', 'mask AP',
                                 row.mask_ap)):
        if value is not None:
            results.append(
                dict(Task=task, Dataset=row.dataset, Metrics={metric: value}))
    entry = {
        'Name': model_name(row),
        'In Collection': collection,
        'Config': row.config,
        'Metadata': metadata,
        'Results': results,
    }
    if row.weights:
        entry['Weights'] = row.weights
    return entry


def model_name(row: Row) -> str:
    """The metafile name: the config's, marked when trained on demo data."""
    return f'{row.name}_demo' if row.dataset == DEMO_DATASET else row.name


def update_metafile(path: str,
                    rows: Sequence[Row],
                    *,
                    collection: str = 'Res2Net') -> None:
    """Write ``rows`` into a model-index ``metafile.yml``, keeping others.

    Models are matched by name: a row replaces the entry of its name and
    any other entry stays as it was. The file is replaced atomically.
    """
    data: Dict[str, Any] = {}
    if osp.isfile(path):
        with open(path, encoding='utf-8') as f:
            data = yaml.safe_load(f) or {}
    collections = data.setdefault('Collections', [])
    if not any(c.get('Name') == collection for c in collections):
        collections.append({
            'Name': collection,
            'Metadata': {
                'Training Techniques': ['SGD with Momentum', 'Weight Decay'],
                'Architecture': ['Res2Net'],
            },
            'Paper': dict(PAPER),
            'README': 'README.md',
        })
    models = {m['Name']: m for m in data.get('Models', [])}
    for row in rows:
        models[model_name(row)] = _model_entry(row, collection)
    data['Models'] = list(models.values())

    write_text(path, yaml.safe_dump(data, sort_keys=False, allow_unicode=True))


# A demo image holds 1-4 objects: a two-stage detector trains its R-CNN
# heads on 64 RoIs an image from 300 proposals at the demo size, as the
# demo config does (configs/demo/), not on 512 from 1000-2000, which are
# mostly background and whose RoIAlign backward is most of a CPU step.
DEMO_PROPOSALS = 300
DEMO_ROIS = 64


def rcnn_train_keys(model: Mapping) -> List[str]:
    """The ``--cfg-options`` keys of a detector's R-CNN training settings:
    ``model.train_cfg.rcnn``, one per stage of a cascade
    (``model.train_cfg.rcnn.0`` ...), none for a one-stage detector."""
    rcnn = (model.get('train_cfg') or {}).get('rcnn')
    if rcnn is None:
        return []
    if isinstance(rcnn, (list, tuple)):
        return [f'model.train_cfg.rcnn.{i}' for i in range(len(rcnn))]
    return ['model.train_cfg.rcnn']


def demo_run_options(data_root: str,
                     *,
                     model: Mapping,
                     scale: int = 160,
                     epochs: int = 1,
                     train_images: Optional[int] = None,
                     test_images: Optional[int] = None) -> List[str]:
    """``--cfg-options`` that run a model-zoo config on the demo data.

    The detector stays as configured, except that a two-stage one trains
    on :data:`DEMO_ROIS` RoIs an image from :data:`DEMO_PROPOSALS`
    proposals (each stage of a cascade); it starts from scratch
    (explicitly, ``init_cfg=None``), at ``scale``² instead of 1333×800, for
    ``epochs`` over the first ``train_images`` demo images, and tests on
    the first ``test_images`` as configured. Scores are low after a short
    run, so every box is kept (``score_thr=0``) and AP is computed.

    Args:
        model: The config's ``model``, for the names of its settings (a
            one-stage detector keeps its ``score_thr`` in ``test_cfg``, a
            two-stage one in ``test_cfg.rcnn``; a cascade has a list of
            R-CNN stages).
    """
    test_cfg = model.get('test_cfg') or {}
    score_thr = 'model.test_cfg.rcnn.score_thr' if 'rcnn' in test_cfg \
        else 'model.test_cfg.score_thr'

    options = [
        f'data_root={data_root.rstrip("/")}/',
        'model.backbone.init_cfg=None',
        f'train_cfg.max_epochs={epochs}',
        # No validation pass after the last epoch: test.py evaluates.
        f'train_cfg.val_begin={epochs + 1}',
        f'train_dataloader.dataset.pipeline.2.scale=({scale},{scale})',
        f'test_dataloader.dataset.pipeline.1.scale=({scale},{scale})',
        'train_dataloader.num_workers=0',
        'train_dataloader.persistent_workers=False',
        'test_dataloader.num_workers=0',
        'test_dataloader.persistent_workers=False',
        f'{score_thr}=0.0',
    ]
    train_cfg = model.get('train_cfg') or {}
    if 'rpn_proposal' in train_cfg:
        options.append('model.train_cfg.rpn_proposal.max_per_img='
                       f'{DEMO_PROPOSALS}')
    options += [
        f'{stage}.sampler.num={DEMO_ROIS}' for stage in rcnn_train_keys(model)
    ]
    if train_images is not None:
        options.append(f'train_dataloader.dataset.indices={train_images}')
    if test_images is not None:
        options.append(f'test_dataloader.dataset.indices={test_images}')
    return options
