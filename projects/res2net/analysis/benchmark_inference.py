# Copyright (c) Res2Net-MMDet contributors. All rights reserved.
"""Inference speed (fps, ms per image) and peak memory of a detector.

What ``tools/analysis_tools/benchmark.py`` measures, as mmdet's
``tools/analysis_tools/benchmark.py`` does: batch 1, the config's test
dataloader without worker processes, and only the model's ``test_step``
timed (preprocessing on the device, forward, post-processing with NMS; not
the image loading); the warm-up images are left out. With CUDA the clock is
read between ``torch.cuda.synchronize()`` calls and the memory is
``torch.cuda.max_memory_allocated()`` (``cuda_max_allocated``: the weights
included). On the CPU the memory is the process's peak resident set size
from ``resource.getrusage`` (``cpu_max_rss``: Python, libraries, weights
and activations together). The dataset is cycled when it has fewer images
than warm-up plus timed ones.

mmdet's own ``mmdet.utils.benchmark.InferenceBenchmark`` is not reused: it
moves the model to CUDA unconditionally, always loads a checkpoint, and
needs ``psutil`` (without it, importing the module fails).

The model is timed in the form asked for, made by
``projects/res2net/models/deploy.py`` (the form ``test.py --deploy``
measures the AP of): ``--fuse-conv-bn`` folds each eval-mode BatchNorm into
the conv before it (Res2Net's split convs' BNs included),
``--channels-last`` runs the model and each preprocessed batch in
``torch.channels_last`` (mmcv's ops, which read NCHW only, excepted),
``--deploy`` is both, and ``--compile`` compiles the backbone and neck with
``torch.compile``. Each changes the detections by float rounding only.

``--precision fp32 int8 bf16`` (any of them, in any order) times the deploy
form with its dense part (backbone, neck and a one-stage head's convs) in
each precision (``projects/res2net/models/precision.py``), one detector
per precision from the same weights, interleaved image by image: the fps
ratio of each to the first comes from one run. The fp32 one is compiled as
well (``--compile`` implied), so that the ratios are those of the
precision alone. int8 loads ``--int8-program`` or calibrates on the train
images first. How many graphs ``torch.compile`` compiled in each form's
calls (warm-up included: a new input size can compile again) is recorded
beside its time.

``--against-backbone resnet`` (or ``mmdet-res2net``) also builds the same
detector with mmdet's ResNet (or mmdet's own Res2Net) of the same depth in
place of ``Res2NetBackbone``, in the same form, and times the two
interleaved, image by image in alternating order, so that their fps ratio
comes from one run. The comparison detector has random weights; the peak
memory is then that of the process holding both.

A detector with random weights (no checkpoint, or the comparison one) has
its BN statistics calibrated on the first test image
(``projects/res2net/analysis/speed.py``): without that its features, and
with them the proposals and NMS work after the backbone, depend on how its
architecture grows random activations, not on its speed.

The results go to ``WORK_DIR/benchmark.json``. Without a checkpoint the
weights are random: the speed is still the network's, but post-processing
runs on meaningless detections.

mmdet's flags mean here what they mean in mmdet 3.3's ``benchmark.py``:
``--max-iter`` counts the warm-up images too, ``--repeat-num`` repeats
the measurement (``repeat_num``), ``--log-interval`` prints mmdet's
progress line. Its ``--task dataloader`` and ``--task dataset``, which time
the data alone, are handed to mmdet's own ``DataLoaderBenchmark`` and
``DatasetBenchmark`` (:func:`benchmark_loading`: those need ``psutil``).
Its ``--launcher`` runs under a launcher of one process
(:func:`check_one_process`): mmdet's benchmarks refuse more, and one
process needs no process group.

Example:
    python tools/analysis_tools/benchmark.py \\
        configs/faster_rcnn_r2_101_fpn_2x.py faster_r2_101.pth --fuse-conv-bn
"""
import os
import os.path as osp
import time
from copy import deepcopy
from functools import partial
from typing import (Any, Dict, Iterable, Iterator, List, Optional, Sequence,
                    Tuple)

import torch
from mmengine.config import Config
from mmengine.logging import MMLogger
from mmengine.runner import Runner
from mmengine.utils import ProgressBar
from torch import nn
from torch._dynamo.utils import counters

from ..engine.cli import build_detector, innermost
from ..engine.quantize import int8_program_for
from ..errors import UserError
from ..models.deploy import DeployReport, deploy
from ..models.precision import to_precision
from .speed import (calibrate_batch_norms, counterpart, describe_device,
                    peak_memory, rotated, sync)

# The seed of random weights (no checkpoint), recorded in benchmark.json.
RANDOM_WEIGHTS_SEED = 0

# mmdet's --task: the detector (here), or the data alone (mmdet's classes).
TASKS = ('inference', 'dataloader', 'dataset')
# mmdet's --dataset-type: the dataloader a data task reads.
SPLITS = ('train', 'val', 'test')
# The variable in which each launcher tells a process how many there are.
_WORLD_SIZE = {
    'pytorch': 'WORLD_SIZE',
    'slurm': 'SLURM_NTASKS',
    'mpi': 'OMPI_COMM_WORLD_SIZE'
}


def to_deploy_form(model: nn.Module,
                   device: str = 'cpu',
                   *,
                   fuse: bool = False,
                   channels_last: bool = False,
                   compile: bool = False) -> Tuple[nn.Module, DeployReport]:
    """Put the model in eval mode on ``device``, in the deploy form asked
    for (:func:`projects.res2net.models.deploy.deploy`), so that the form
    timed is the form ``test.py --deploy`` measures the AP of."""
    model.to(device)
    report = deploy(
        model, fold_bn=fuse, channels_last=channels_last, compile=compile)
    return model, report


def inference_step(model: nn.Module,
                   data: Dict[str, Any],
                   *,
                   channels_last: bool = False) -> List[Any]:
    """What ``model.test_step(data)`` does, with channels-last inputs if asked.

    The batch is converted after the data preprocessor has stacked it.
    """
    data = model.data_preprocessor(data, False)
    if channels_last:
        data['inputs'] = data['inputs'].contiguous(
            memory_format=torch.channels_last)
    return model(**data, mode='predict')


def build_test_loader(cfg: Config) -> Iterable:
    """The test dataloader at batch 1 without worker processes (as mmdet's
    benchmark: workers would make the timing noisier)."""
    loader_cfg = deepcopy(cfg.test_dataloader)
    loader_cfg.update(batch_size=1, num_workers=0, persistent_workers=False)
    return Runner.build_dataloader(loader_cfg)


def endless(loader: Iterable) -> Iterator:
    """The loader's batches over and over: a small test set still gives
    as many images as the timing asks for.

    Raises:
        UserError: The loader has no batches at all.
    """
    while True:
        empty = True
        for data in loader:
            empty = False
            yield data
        if empty:
            raise UserError('the test dataset has no images; check '
                            'test_dataloader.dataset (its ann_file)')


def _resizes(node: Any) -> Iterator[Dict]:
    """The resize transforms in a (nested) pipeline config."""
    if isinstance(node, dict):
        if 'Resize' in str(node.get('type', '')):
            yield node
        for value in node.values():
            yield from _resizes(value)
    elif isinstance(node, (list, tuple)):
        for value in node:
            yield from _resizes(value)


def resize_note(cfg: Config) -> str:
    """The test pipeline's resize step(s), e.g. ``Resize(scale=(1333, 800),
    keep_ratio=True)``: fps mean little without the image size."""
    dataset = innermost(cfg.test_dataloader.dataset)
    steps = [
        f"{t['type']}(scale={t.get('scale', t.get('scale_factor'))}, "
        f"keep_ratio={t.get('keep_ratio', False)})"
        for t in _resizes(dataset.get('pipeline', []))
    ]
    return ', '.join(steps) if steps else 'no resize in the test pipeline'


def time_inference(
    models: Dict[str, nn.Module],
    loader: Iterable,
    device: str,
    *,
    num_images: int,
    warmup: int,
    channels_last: bool,
    amp: bool = False,
    log_interval: Optional[int] = None
) -> Tuple[Dict[str, float], Optional[tuple], Dict[str, int]]:
    """Seconds each model spends in :func:`inference_step` on
    ``num_images`` images after ``warmup`` ones, the padded input shape
    of the first, and how many graphs ``torch.compile`` compiled in each
    model's calls (warm-up included). Several models get each image in
    turn, in alternating order. ``amp``: under float16 autocast (CUDA).

    Progress: a bar, or with ``log_interval`` mmdet's line every that many
    images (warm-up counted, as mmdet counts them) with the first model's
    fps so far."""
    autocast = torch.autocast('cuda', dtype=torch.float16, enabled=amp)
    batches = endless(loader)
    totals = {name: 0.0 for name in models}
    compiles = {name: 0 for name in models}
    names = list(models)
    shape = None
    bar = None
    timing = False
    with torch.no_grad():
        for i in range(warmup + num_images):
            data = next(batches)
            if i == warmup:
                timing = True
                if log_interval is None:
                    bar = ProgressBar(num_images)
            for name in rotated(names, i):
                graphs = counters['stats']['unique_graphs']
                sync(device)
                start = time.perf_counter()
                with autocast:
                    results = inference_step(
                        models[name], data, channels_last=channels_last)
                sync(device)
                if timing:
                    totals[name] += time.perf_counter() - start
                compiles[name] += counters['stats']['unique_graphs'] - graphs
                if shape is None:
                    shape = results[0].metainfo.get('batch_input_shape')
            if bar is not None:
                bar.update()
            elif timing and (i + 1) % log_interval == 0:
                fps = (i + 1 - warmup) / totals[names[0]]
                print(f'Done image [{i + 1:<3}/{warmup + num_images}], '
                      f'fps: {fps:.1f} img/s, times per image: '
                      f'{1000 / fps:.1f} ms/img')
    if bar is not None:
        print()  # end the progress bar's line
    return totals, shape, compiles


def work_dir_of(config: str,
                cfg: Config,
                work_dir: Optional[str] = None) -> str:
    """Where ``benchmark.json`` goes, by mmdet's rule: ``work_dir`` (the
    tool's ``--work-dir``), else the config's, else
    ``./work_dirs/<config name>``."""
    if work_dir is not None:
        return work_dir
    if cfg.get('work_dir') is not None:
        return cfg.work_dir
    return osp.join('./work_dirs', osp.splitext(osp.basename(config))[0])


def _precision_forms(models: Dict[str, nn.Module], cfg: Config, *,
                     checkpoint: Optional[str], int8_program: Optional[str],
                     calib_images: int) -> Dict[str, str]:
    """Put each deployed model keyed by a precision in that precision; what
    was done to each, for the report."""
    done = {}
    for precision, model in models.items():
        program = None
        if precision == 'int8':
            program = int8_program_for(
                cfg,
                model,
                checkpoint=checkpoint,
                program=int8_program,
                calib_images=calib_images,
                log=print)
        done[precision] = to_precision(model, precision, program=program)
    return done


def benchmark_detector(cfg: Config,
                       *,
                       config: str,
                       checkpoint: Optional[str],
                       device: str,
                       num_images: int,
                       warmup: int,
                       fuse: bool,
                       channels_last: bool,
                       compile: bool,
                       amp: bool,
                       against: Optional[str],
                       precisions: Sequence[str] = (),
                       int8_program: Optional[str] = None,
                       calib_images: int = 32,
                       repeat_num: int = 1,
                       log_interval: Optional[int] = None
                       ) -> Tuple[dict, DeployReport]:
    """Time the config's detector (and its counterpart, or its forms in
    other precisions, where asked).

    Args:
        cfg: The loaded config, its test data checked.
        config: The config's path, as the user gave it (recorded).
        checkpoint: The weights, or None for random ones.
        device: Where the models run.
        num_images: Images timed, after ``warmup`` untimed ones.
        warmup: Images run before timing starts.
        fuse: Fold the BatchNorms into the convs.
        channels_last: Run the models and their inputs in channels-last.
        compile: Compile the backbone and neck.
        amp: Under float16 autocast (CUDA).
        against: A counterpart of ``speed.COUNTERPARTS`` to time the same
            detector with, interleaved, or None.
        precisions: Precisions of :mod:`projects.res2net.models.precision`
            (checked by ``precision_plan``) to time the deploy form in, one
            detector each, interleaved; the first is the one reported as
            ``fps``, the others also as ratios to it. Empty: the form that
            ``fuse``, ``channels_last`` and ``compile`` make, alone.
        int8_program: For ``int8``: a saved program of ``checkpoint``, or
            None to calibrate.
        calib_images: Calibration images when there is no program.
        repeat_num: Measurements (warm-up and timed images each, from the
            first test image on), as mmdet's ``--repeat-num``: ``fps_list``
            holds each one's fps; ``fps``, ``ms_per_image`` and the ratios
            are those of all their timed images together (mmdet averages
            the fps; the two differ by the spread of the measurements).
        log_interval: mmdet's progress line every that many images instead
            of the bar (see :func:`time_inference`).

    Returns:
        What ``benchmark.json`` holds, and the deploy report of ours (the
        first precision's).

    Raises:
        UserError: A checkpoint that does not fit, no test images, a
            counterpart and precisions together, or an int8 program that
            is not this checkpoint's.
    """
    if against and precisions:
        raise UserError('--against-backbone and --precision: time one '
                        'comparison at a time')
    if precisions:
        # The deploy form, compiled, in each precision: the ratios are
        # those of the precision alone.
        fuse = channels_last = compile = True
    if cfg.get('env_cfg', {}).get('cudnn_benchmark'):
        torch.backends.cudnn.benchmark = True
    # Random weights are drawn from one seed: how many boxes pass the score
    # threshold, and so the heads' and NMS's work, depends on the draw (a
    # detector's time moved 2x between unseeded runs), so that runs of one
    # config differ by the machine only.
    seed = RANDOM_WEIGHTS_SEED if checkpoint is None else None
    if seed is not None:
        torch.manual_seed(seed)
    ours = build_detector(cfg, checkpoint)
    loader = build_test_loader(cfg)
    first = next(endless(loader))
    others = {}
    if against:
        other = deepcopy(cfg)
        other.model.backbone = counterpart(cfg.model.backbone, against)
        torch.manual_seed(RANDOM_WEIGHTS_SEED)
        others[against] = build_detector(other, None)
    for name, model in [('ours', ours), *others.items()]:
        if name != 'ours' or checkpoint is None:
            inputs = model.data_preprocessor(first, False)['inputs']
            calibrate_batch_norms(model, partial(model.extract_feat, inputs))
    names = list(precisions) or ['ours']
    # The same weights in every precision (random ones included).
    models = {
        name: deepcopy(ours) if i else ours
        for i, name in enumerate(names)
    }
    models.update(others)
    reports = {
        name:
        to_deploy_form(
            model,
            device,
            fuse=fuse,
            channels_last=channels_last,
            compile=compile and name in ('ours', 'fp32', against))[1]
        for name, model in models.items()
    }
    done = _precision_forms({n: models[n]
                             for n in precisions},
                            cfg,
                            checkpoint=checkpoint,
                            int8_program=int8_program,
                            calib_images=calib_images)
    runs = [
        time_inference(
            models,
            loader,
            device,
            num_images=num_images,
            warmup=warmup,
            channels_last=channels_last,
            amp=amp,
            log_interval=log_interval) for _ in range(repeat_num)
    ]
    shape = runs[0][1]
    seconds = {name: sum(run[0][name] for run in runs) for name in models}
    compiles = {name: sum(run[2][name] for run in runs) for name in models}
    # Each measurement's fps of ours (the first precision), as mmdet's
    # --repeat-num lists them.
    fps_list = [num_images / run[0][names[0]] for run in runs]
    memory, memory_kind = peak_memory(device)
    # One value, rounded once: what is printed is what is stored.
    memory = round(memory, 1)

    shape_note = f'test pipeline {resize_note(cfg)}'
    if shape is not None:
        shape_note += f'; first input padded to {shape[0]}x{shape[1]}'
    mine = seconds[names[0]]
    timed = num_images * repeat_num
    against_result = None
    if against:
        theirs = seconds[against]
        against_result = dict(
            backbone=against,
            fps=timed / theirs,
            ms_per_image=1000 * theirs / timed,
            fps_ratio=theirs / mine)
    result = dict(
        config=config,
        checkpoint=checkpoint,
        device=device,
        hardware=describe_device(device),
        seed=seed,
        batch_size=1,
        input_shape=list(shape) if shape is not None else None,
        num_images=num_images,
        warmup=warmup,
        repeat_num=repeat_num,
        fps=timed / mine,
        ms_per_image=1000 * mine / timed,
        fps_list=fps_list,
        compiles=compiles[names[0]],
        peak_memory_mb=memory,
        memory_kind=memory_kind,
        fuse_conv_bn=fuse,
        channels_last=channels_last,
        compile=compile,
        amp=amp,
        against=against_result,
        precisions={
            name:
            dict(
                fps=timed / seconds[name],
                ms_per_image=1000 * seconds[name] / timed,
                fps_ratio=mine / seconds[name],
                compiles=compiles[name],
                form='; '.join(
                    filter(None, [reports[name].summary(), done[name]])))
            for name in precisions
        },
        shape_note=shape_note)
    return result, reports[names[0]]


def timed_images(*,
                 num_images: Optional[int],
                 max_iter: Optional[int],
                 warmup: int,
                 repeat_num: int = 1,
                 log_interval: Optional[int] = None,
                 default: int = 200) -> int:
    """The images to time after the warm-up: ``num_images`` (ours), or
    mmdet's ``max_iter`` less the warm-up (mmdet counts the warm-up in), or
    ``default``; the other counts checked with them.

    Raises:
        UserError: Both counts of the images, or a count out of range.
    """
    if num_images is not None and max_iter is not None:
        raise UserError('--num-images and --max-iter: give the timed images '
                        '(--num-images) or, as mmdet counts, the images run '
                        'with the warm-up (--max-iter)')
    if warmup < 0 or repeat_num < 1 or (log_interval is not None
                                        and log_interval < 1):
        raise UserError('--warmup must be at least 0, --repeat-num and '
                        f'--log-interval at least 1 (got {warmup}, '
                        f'{repeat_num} and {log_interval})')
    if max_iter is not None:
        if max_iter <= warmup:
            raise UserError(f'--max-iter {max_iter} counts the warm-up: pass '
                            f'more than --warmup/--num-warmup {warmup}')
        return max_iter - warmup
    if num_images is None:
        return default
    if num_images < 1:
        raise UserError('--num-images must be at least 1 and --warmup at '
                        f'least 0 (got {num_images} and {warmup})')
    return num_images


def check_one_process(launcher: str) -> None:
    """mmdet's ``--launcher`` for a benchmark: one process, started by it.

    mmdet's benchmarks assert a world of one (``python -m
    torch.distributed.launch --nproc_per_node=1 ... --launcher pytorch`` in
    its docs); that process times alone and communicates with no one, so
    no process group is started.

    Raises:
        UserError: The process was not started by ``launcher``, or several
            were.
    """
    if launcher == 'none':
        return
    variable = _WORLD_SIZE[launcher]
    size = os.environ.get(variable)
    if size is None:
        raise UserError(f'--launcher {launcher}: this process was not '
                        f'started by its launcher ({variable} not set); drop '
                        '--launcher: one process is timed')
    if int(size) != 1:
        raise UserError(f'--launcher {launcher}: {size} processes; a '
                        'benchmark times one (as mmdet\'s), start one '
                        '(--nproc_per_node=1, one task) or drop --launcher')


def benchmark_loading(cfg: Config,
                      *,
                      task: str,
                      split: str,
                      max_iter: int,
                      warmup: int,
                      log_interval: int,
                      repeat_num: int,
                      log_file: Optional[str] = None) -> Dict[str, Any]:
    """Time the loading of the config's ``split`` data, no model: mmdet's
    ``benchmark.py --task dataloader`` (its ``DataLoaderBenchmark``: the
    batches of ``<split>_dataloader`` as configured, workers included) or
    ``--task dataset`` (its ``DatasetBenchmark``: each image's transforms,
    in a random order), run as mmdet's tool runs them; they print their
    progress and results, and ``log_file`` gets them too.

    A dataset with fewer than ``max_iter`` batches (images) is timed whole,
    as mmdet's loop ends there; the count is then the dataset's.

    Returns:
        mmdet's results: ``avg_fps`` and ``fps_list`` (batches or images
        per second).

    Raises:
        UserError: ``psutil`` missing (mmdet's module needs it), no data,
            or fewer than ``warmup`` + 1 batches to time.
    """
    try:
        import psutil  # noqa: F401  (mmdet.utils.benchmark needs it)
    except ImportError as err:
        raise UserError(f'--task {task} runs mmdet\'s own benchmark, which '
                        'needs psutil: pip install psutil') from err
    from mmdet.utils.benchmark import DataLoaderBenchmark, DatasetBenchmark

    if log_file is not None:
        os.makedirs(osp.dirname(osp.abspath(log_file)), exist_ok=True)
    logger = MMLogger.get_instance(
        f'benchmark_{task}_{time.time_ns()}',
        log_file=log_file,
        log_level='INFO')
    if task == 'dataloader':
        bench = DataLoaderBenchmark(
            cfg, False, split, max_iter, log_interval, warmup, logger=logger)
        length = len(bench.data_loader)
    elif task == 'dataset':
        bench = DatasetBenchmark(
            cfg, split, max_iter, log_interval, warmup, logger=logger)
        length = len(bench.dataset)
    else:
        raise ValueError(f'not a data task: {task}')
    if not length:
        raise UserError(f'{split}_dataloader has no images; check its '
                        'dataset (ann_file, data_prefix)')
    if length < max_iter:
        print(f'{split}_dataloader has {length} '
              f'{"batches" if task == "dataloader" else "images"}: timing '
              f'them all (--max-iter {max_iter} asks for more)')
        bench.max_iter = length
    if bench.max_iter <= warmup:
        raise UserError(f'--max-iter {bench.max_iter} (warm-up included) '
                        f'leaves nothing to time after --num-warmup {warmup}'
                        '; lower --num-warmup')
    return bench.run(repeat_num)
