# Copyright (c) Res2Net-MMDet contributors. All rights reserved.
"""What the tools share.

The tools stay thin: they parse mmdet's flags (:func:`make_parser`, or
:func:`tool_parser` for the analysis tools), build a config
(:func:`config_from_args`), check its inputs (:func:`check_data`) and hand it
to mmengine's Runner (:func:`build_runner`), or build the detector from a
checkpoint themselves (:func:`build_detector`). The checks exist so that
a user's mistake ends in one line that names the cause and the fix
(:func:`run_tool`) instead of a traceback from deep inside the Runner, after
work directories have been created.
"""
import argparse
import gc
import logging
import os
import os.path as osp
import sys
from typing import (Any, Callable, Dict, Iterable, List, Mapping, Optional,
                    Sequence)

import torch
from mmdet.utils import register_all_modules, setup_cache_size_limit_of_dynamo
from mmengine.config import Config, DictAction
from mmengine.logging import MMLogger
from mmengine.model import revert_sync_batchnorm
from mmengine.registry import RUNNERS
from mmengine.runner import Runner, load_checkpoint
from torch import nn

from ..errors import CheckpointError, UserError, error_line
from ..models.checkpoint import no_random_init
from .dist import (BACKENDS, LAUNCHERS, close_process_group,
                   configure_distributed, init_process_group)
from .preemption import TrainingStopped, conclude
from .preflight import build_from, trust_checkpoints

_DEMO_HINT = ('for the demo data run: python tools/misc/generate_demo_data.py'
              ' --out data/demo, then pass --cfg-options data_root=data/demo/')


def run_tool(main: Callable[[], Any]) -> None:
    """Run a tool's ``main``; report a :class:`UserError` as one line.

    The exit status is 2, as for a command-line usage error. A training run
    stopped on a signal leaves its process group, then requeues its Slurm
    job or says how to resume (:func:`~.preemption.conclude`). A
    distributed run leaves its process group at the end, whatever happened.
    """
    # What the tool imported (torch, mmengine, mmdet: 350,000 objects) lives
    # as long as the process. Exempted from the cyclic garbage collector, it
    # is not walked again by each full collection (mmengine's datasets ask
    # for one as they are built): 0.8 of the 4.6 CPU-seconds of a test.py
    # run on 5 demo images, 1 of the 10.3 of a two-iteration R2-101
    # training (docs/development.md); and the loader workers forked
    # later do not copy its pages as a collection touches them. A process
    # that froze objects itself (a test process running the tool) keeps
    # its own choice.
    if gc.get_freeze_count() == 0:
        gc.freeze()
    try:
        main()
    except UserError as err:
        print(f'error: {err}', file=sys.stderr)
        sys.exit(2)
    except TrainingStopped as stop:
        close_process_group()  # every rank, before a requeue ends them
        sys.exit(conclude(stop))
    finally:
        close_process_group()


def example_epilog(example: str) -> Dict[str, Any]:
    """The ``epilog`` and ``formatter_class`` arguments of an
    ``ArgumentParser`` (or of a subcommand's) whose ``--help`` ends with
    ``example: <example>``, its line breaks kept."""
    return dict(
        epilog=f'example: {example}',
        formatter_class=argparse.RawDescriptionHelpFormatter)


def tool_parser(description: str, example: str) -> argparse.ArgumentParser:
    """The parser of a tool: its ``--help`` says what the tool does and
    ends with an example command."""
    return argparse.ArgumentParser(
        description=description, **example_epilog(example))


def _check_key_values(options: Sequence[str]) -> None:
    """Raise one line for a ``--cfg-options`` item without ``=``."""
    for option in options:
        if '=' not in option:
            raise UserError(f'--cfg-options {option}: not key=value; write '
                            'e.g. train_cfg.max_epochs=12')


def _top_level_items(text: str) -> List[str]:
    """``text`` split at its commas outside brackets, as mmengine's
    ``DictAction`` splits a list, with every character kept.

    Raises:
        ValueError: Its round or square brackets do not pair up.
    """
    if text.count('(') != text.count(')') or \
            text.count('[') != text.count(']'):
        raise ValueError('its brackets do not pair up')
    items, depth, start = [], 0, 0
    for i, char in enumerate(text):
        if char in '([':
            depth += 1
        elif char in ')]':
            depth -= 1
        elif char == ',' and depth == 0:
            items.append(text[start:i])
            start = i + 1
    items.append(text[start:])
    # mmengine ends a list at its last comma: '[a,b,]' is [a, b], '[]' [].
    if not items[-1].strip():
        items.pop()
    return items


class CfgOptionsAction(DictAction):
    """mmengine's ``DictAction`` that keeps each value as the user typed it.

    mmengine 0.10.7 removes every space of a value before it splits it into
    list and tuple items, so ``data_root=/data/my set/`` arrives as
    ``/data/myset/`` and a class ``'sports ball'`` as ``sportsball``. Here
    only the spaces around the whole value and around each item go; lists
    (``a,b``, ``[a,b]``), tuples (``(1,2)``), nesting, quotes around an item
    and the scalars (``_parse_int_float_bool``: int, float, bool, None) are
    mmengine's. An item that is not ``key=value``, or whose brackets do not
    pair up, is refused in one line (mmengine raises from inside argparse:
    a traceback).
    """

    @staticmethod
    def _parse_iterable(val: str) -> Any:
        """A value (or a list item) as mmengine parses it, its inner spaces
        kept. ``DictAction.__call__`` calls it through ``self``.

        Raises:
            ValueError: Its brackets do not pair up.
        """
        val = val.strip().strip('\'"')
        is_tuple = val.startswith('(') and val.endswith(')')
        if is_tuple or (val.startswith('[') and val.endswith(']')):
            val = val[1:-1]
        elif ',' not in val:
            return DictAction._parse_int_float_bool(val)
        values = [
            CfgOptionsAction._parse_iterable(item)
            for item in _top_level_items(val)
        ]
        return tuple(values) if is_tuple else values

    def __call__(self, parser, namespace, values, option_string=None):
        _check_key_values(values)
        for option in values:
            try:
                self._parse_iterable(option.split('=', 1)[1])
            except ValueError as err:
                raise UserError(f'--cfg-options {option}: {err}; write a '
                                'list as key=[a,b] or a tuple as key=(a,b), '
                                'quoted for the shell') from err
        super().__call__(parser, namespace, values, option_string)


def add_cfg_options(parser: argparse.ArgumentParser) -> None:
    """``--cfg-options``, as :func:`load_config` applies them."""
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=CfgOptionsAction,
        help='override config settings, key=value, e.g. data_root=data/demo/'
        ' (moves every dataset path under the old root) or '
        'model.backbone.init_cfg.checkpoint=/path/to/weights.pth; a list is '
        'key=[a,b] or key=a,b, a tuple key=(a,b); spaces inside a value '
        'stay (quote it for the shell)')


def parse_cfg_options(options: Sequence[str]) -> Dict[str, Any]:
    """``--cfg-options`` given as ``key=value`` strings, parsed as the tools
    parse them (:class:`CfgOptionsAction`), for a tool that passes them on.

    Raises:
        UserError: An option without ``=``, or with unpaired brackets.
    """
    parsed = argparse.Namespace()
    CfgOptionsAction(
        option_strings=[], dest='cfg_options')(None, parsed, list(options))
    return parsed.cfg_options


def make_parser(description: str, example: str,
                work_dir_help: str) -> argparse.ArgumentParser:
    """A parser with the arguments both tools take, as mmdet names them.

    ``CONFIG``, ``--work-dir``, ``--cfg-options``, ``--launcher`` and
    ``--local-rank``, plus ``--dist-backend`` and ``--trust-checkpoint``;
    each tool adds its own after ``CONFIG``.
    """
    parser = tool_parser(description, example)
    parser.add_argument('config', help='config file path')
    parser.add_argument('--work-dir', help=work_dir_help)
    add_cfg_options(parser)
    parser.add_argument(
        '--launcher',
        choices=LAUNCHERS,
        default='none',
        help='job launcher (the dist_*.sh and slurm_*.sh scripts set it)')
    parser.add_argument(
        '--dist-backend',
        choices=BACKENDS,
        default='auto',
        help='process-group backend of a distributed run; auto: the '
        "config's env_cfg.dist_cfg.backend (nccl) on GPUs, gloo without")
    parser.add_argument(
        '--trust-checkpoint',
        action='store_true',
        help='load checkpoints with torch\'s full unpickler: only for a '
        'legacy file you trust, since its pickle can run code')
    # torch.distributed.launch passes --local-rank (torch >= 2.0).
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    return parser


def parse_cli(parser: argparse.ArgumentParser) -> argparse.Namespace:
    """Parse the command line; export ``LOCAL_RANK`` as mmengine expects."""
    args = parser.parse_args()
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def build_runner(cfg: Config) -> Runner:
    """mmengine's Runner, or the one the config names in ``runner_type``.

    A distributed run joins its process group first, so that the Runner,
    which skips ``init_dist`` then, also works on a machine without a GPU.
    """
    if cfg.launcher != 'none':
        init_process_group(cfg.launcher, cfg.env_cfg.dist_cfg)
    return Runner.from_cfg(cfg) if 'runner_type' not in cfg else \
        RUNNERS.build(cfg)


def build_detector(cfg: Config,
                   checkpoint: Optional[str] = None,
                   *,
                   init_weights: bool = True) -> nn.Module:
    """The config's detector on the CPU, with the checkpoint's weights.

    Nothing is downloaded: the backbone's ``init_cfg`` (ImageNet weights) is
    never applied, the checkpoint holds every weight; without one the
    weights are random, initialised as a training run starts
    (:func:`init_random_weights`; ``init_weights=False`` leaves torch's
    defaults). The checkpoint must fit the model
    exactly: a model that kept some random layers would look like a
    success. As in mmdet's
    ``init_detector``, ``model.dataset_meta`` gets the class names the
    checkpoint was trained with, where it records them. SyncBN becomes BN,
    for one process.

    Follows ``init_detector`` of mmdet 3.3's ``mmdet/apis/inference.py``
    (OpenMMLab, Apache-2.0): the backbone's ``init_cfg`` dropped, the
    checkpoint's ``dataset_meta`` (or 2.x ``CLASSES``), SyncBN reverted.
    It is not called: it loads non-strictly (missing layers stay random,
    with a log line), falls back to COCO's classes with a warning, reads the
    test dataset for a palette and moves the model to a device.

    Raises:
        CheckpointError: The file cannot be read or does not fit the model.
    """
    register_all_modules()  # also makes 'mmdet' the default scope
    if cfg.model.get('backbone') is not None:
        cfg.model.backbone.init_cfg = None
    if checkpoint is None:
        model = build_from(cfg.model)
        if init_weights:
            init_random_weights(model)
    else:
        # The strict load below replaces every parameter.
        with no_random_init():
            model = build_from(cfg.model)
        try:
            ckpt = load_checkpoint(
                model, checkpoint, map_location='cpu', strict=True)
        except Exception as err:  # torch.load's, or a mismatch (strict)
            lines = [line.strip() for line in str(err).splitlines()]
            detail = '; '.join(line for line in lines if line)
            if len(detail) > 300:
                detail = detail[:300] + '...'
            raise CheckpointError(
                f'cannot load checkpoint {checkpoint}: '
                f'{type(err).__name__}: {detail}; pass a checkpoint '
                'trained with this config') from err
        meta = ckpt.get('meta') or {}
        # mmengine records the dataset's metainfo; mmdet 2.x its CLASSES.
        classes = {
            key.lower(): value
            for key, value in (meta.get('dataset_meta') or {}).items()
        }.get('classes', meta.get('CLASSES'))
        if classes:
            model.dataset_meta = {'classes': tuple(classes)}
    return revert_sync_batchnorm(model)


def init_random_weights(model: nn.Module) -> None:
    """mmdet's initialisation of each module (``init_weights``), without
    mmengine's log line per parameter.

    Random weights as a training run starts them keep the activations in
    range through a deep network; torch's defaults alone let them grow
    layer by layer, to values (or infs) whose arithmetic and NMS would not
    time like a real model's.
    """
    logger = MMLogger.get_current_instance()
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        model.init_weights()
    finally:
        logger.setLevel(level)


def choose_device(requested: Optional[str]) -> str:
    """``requested``, or cuda when available, else cpu.

    Raises:
        UserError: cuda (or ``cuda:N``, as mmdet's demos default to) asked
            for but not available.
    """
    available = torch.cuda.is_available()
    if requested and requested.startswith('cuda') and not available:
        raise UserError(f'--device {requested}: no CUDA device is available '
                        'to torch here; use --device cpu')
    return requested or ('cuda' if available else 'cpu')


def require_file(path: str, what: str, fix: str) -> None:
    """Raise a :class:`UserError` unless ``path`` is an existing file."""
    if not osp.isfile(path):
        raise UserError(f'{what} not found: {path}; {fix}')


def _rebase(node: Any, old: str, new: str) -> Any:
    """Return ``node`` with every string under ``old`` moved to ``new``."""
    if isinstance(node, str) and node.startswith(old):
        return new + node[len(old):]
    if isinstance(node, dict):
        for key, value in node.items():
            node[key] = _rebase(value, old, new)
        return node
    if isinstance(node, (list, tuple)):
        return type(node)(_rebase(value, old, new) for value in node)
    return node


def innermost(dataset_cfg: Any) -> Any:
    """The dataset inside wrappers (``RepeatDataset``, ``ClassBalanced``
    ...): the one with the annotations and the pipeline."""
    while 'dataset' in dataset_cfg:
        dataset_cfg = dataset_cfg['dataset']
    return dataset_cfg


def load_config(path: str,
                cfg_options: Optional[Mapping[str, Any]] = None) -> Config:
    """Read a config file and apply ``--cfg-options``.

    ``data_root`` is a single fact in mmdet's dataset configs, but they copy
    it into every dataloader and evaluator when the file is parsed, so
    overriding it alone changes nothing. Here an overridden ``data_root``
    moves every path that was under the old root, which makes
    ``--cfg-options data_root=/path/to/coco/`` do what it says.

    Raises:
        UserError: The file does not exist or cannot be parsed.
    """
    require_file(
        path, 'config file',
        'pass the path of a .py config, e.g. configs/htc_r2_101_fpn_20e.py')
    try:
        cfg = Config.fromfile(path)
    except Exception as err:  # syntax errors, missing bases, bad imports
        raise UserError(
            f'cannot read config {path}: {error_line(err)}') from err
    # The config text without yapf: mmengine formats it afresh each time a
    # run logs, dumps or checkpoints it, 0.3-1 s a time (1-3 s of a train.py
    # or test.py run on a CPU); unformatted it is the same Python, a key a
    # line.
    # fromfile ignores its format_python_code for plain config files
    # (mmengine 0.10.7), so the Config is made again with it.
    cfg = Config(
        cfg.to_dict(),
        cfg_text=cfg.text,
        filename=cfg.filename,
        env_variables=cfg.env_variables,
        format_python_code=False)
    if cfg_options:
        old_root = cfg.get('data_root')
        cfg.merge_from_dict(dict(cfg_options))
        new_root = cfg.get('data_root')
        if old_root and new_root and new_root != old_root:
            new_root = new_root.rstrip('/') + '/'
            old_root = old_root.rstrip('/') + '/'
            options = dict(cfg_options)
            options.pop('data_root')
            # Move the paths parsed from the old root, then re-apply the
            # user's explicit options so that they still win.
            _rebase(cfg._cfg_dict, old_root, new_root)
            cfg.merge_from_dict(options)
            cfg.data_root = new_root
    return cfg


def config_from_args(args: argparse.Namespace) -> Config:
    """The config a tool runs: the file, ``--cfg-options``, the launcher.

    The work dir follows mmdet's rule: ``--work-dir``, else the config's,
    else ``./work_dirs/<config name>``. ``--trust-checkpoint`` lets torch
    load checkpoints in full from here on. A distributed run gets its backend
    and DDP wrapper
    (:func:`~projects.res2net.engine.dist.configure_distributed`).
    """
    # Fewer repeated compilations when the model is torch.compile'd.
    setup_cache_size_limit_of_dynamo()
    if args.trust_checkpoint:
        trust_checkpoints()
    cfg = load_config(args.config, args.cfg_options)
    cfg.launcher = args.launcher
    configure_distributed(cfg, args.dist_backend)
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir') is None:
        name = osp.splitext(osp.basename(args.config))[0]
        cfg.work_dir = osp.join('./work_dirs', name)
    return cfg


def leaf_datasets(cfg: Mapping) -> Iterable[Mapping]:
    """Yield the leaf dataset configs under a (wrapped) dataset config."""
    if 'dataset' in cfg:
        yield from leaf_datasets(cfg['dataset'])
    elif 'datasets' in cfg:
        for sub in cfg['datasets']:
            yield from leaf_datasets(sub)
    else:
        yield cfg


def reads_semantic_maps(dataset: Mapping) -> bool:
    """Whether a dataset's pipeline loads the semantic maps under its
    ``data_prefix['seg']``: a ``LoadAnnotations`` with ``with_seg=True``,
    or a ``LoadPanopticAnnotations`` (which loads them by default). mmdet's
    instance-only Mask2Former configs keep the panoptic base's ``seg``
    prefix without reading it."""
    defaults = {'LoadAnnotations': False, 'LoadPanopticAnnotations': True}
    pipeline = dataset.get('pipeline')
    if not pipeline:
        return True  # unknown: as if it did
    return any(
        isinstance(t, Mapping) and t.get('type') in defaults
        and t.get('with_seg', defaults[t.get('type')]) for t in pipeline)


def check_data(cfg: Config, loaders: Iterable[str]) -> None:
    """Fail early, in one line, when a dataloader's files are not there.

    Checks each dataset's annotation file and image folder (and semantic
    map folder, where its pipeline reads one) and each evaluator's
    annotation file, as mmengine would join them.

    Raises:
        UserError: Names the missing path, the data root it was looked
            for under, and how to point elsewhere.
    """
    fix = ('put the dataset there or point at it with --cfg-options '
           f'data_root=/path/to/coco/ ({_DEMO_HINT})')
    for loader in loaders:
        if not cfg.get(loader):
            continue
        for dataset in leaf_datasets(cfg[loader]['dataset']):
            root = dataset.get('data_root') or ''
            where = f'{loader} (data_root={root!r})'
            ann_file = dataset.get('ann_file')
            if ann_file:
                path = osp.join(root, ann_file)
                if not osp.isfile(path):
                    raise UserError(
                        f'{where}: annotation file not found: {path}; {fix}')
            for key, folder in (dataset.get('data_prefix') or {}).items():
                if key == 'seg' and not reads_semantic_maps(dataset):
                    continue
                path = osp.join(root, folder)
                if folder and not osp.isdir(path):
                    raise UserError(
                        f'{where}: folder not found: {path}; {fix}')
        evaluator = loader.replace('_dataloader', '_evaluator')
        metrics = cfg.get(evaluator) or []
        for metric in metrics if isinstance(metrics, list) else [metrics]:
            ann_file = metric.get('ann_file')
            if ann_file and not osp.isfile(ann_file):
                raise UserError(f'{evaluator}: annotation file not found: '
                                f'{ann_file}; {fix}')


# CocoMetric's keys, in the order of COCO's summary, and their short names.
AP_COLUMNS = (('mAP', 'AP'), ('mAP_50', 'AP50'), ('mAP_75', 'AP75'),
              ('mAP_s', 'APs'), ('mAP_m', 'APm'), ('mAP_l', 'APl'))


def ap_table(metrics: Mapping[str, float]) -> str:
    """Format CocoMetric's results as a markdown table, a row per task.

    COCO reports -1 for a size range without ground truth; that shows as
    "–" (the JSON keeps the raw value).
    """
    lines = [
        '| task | ' + ' | '.join(name for _, name in AP_COLUMNS) + ' |',
        '|---' * (len(AP_COLUMNS) + 1) + '|'
    ]
    for task in ('bbox', 'segm'):
        if f'coco/{task}_mAP' not in metrics:
            continue
        values = [metrics[f'coco/{task}_{key}'] for key, _ in AP_COLUMNS]
        cells = [f'{v:.3f}' if v >= 0 else '–' for v in values]
        lines.append(f'| {task} | ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)
