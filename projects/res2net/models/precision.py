# Copyright (c) Res2Net-MMDet contributors. All rights reserved.
"""The dense part of a detector (backbone and neck) in bf16 or int8, on x86
CPUs: the last step of its deploy form (:mod:`.deploy`).

* **int8**: post-training static quantization with PyTorch's x86 path.
  The dense part is captured with ``torch.export`` (image height and width
  dynamic, multiples of 32), the ``torchao`` PT2E ``prepare_pt2e`` inserts
  observers as the x86 inductor quantizer places them, calibration images
  run through it, ``convert_pt2e`` writes the int8 program, and
  ``torch.compile`` with inductor's freezing lowers it to oneDNN's int8
  kernels. What depends on the data (box decoding, NMS, RoI sampling,
  RoIAlign, the RoI heads) stays eager fp32. The program can be saved
  (:func:`save_int8`) and loaded without the calibration data
  (:func:`load_int8`); its record names the checkpoint (sha256) and model
  it was made from, and a program made from others is refused.
* **bf16**: the dense part runs under ``torch.autocast`` to bf16, compiled
  with freezing, its outputs cast back to fp32 for the heads.

Both replace the detector's ``backbone`` with one module that computes
backbone and neck, and its ``neck`` with ``nn.Identity``: mmdet's
``extract_feat`` calls them in that order. In a one-stage detector
(RetinaNet, FCOS, ATSS: a ``SingleStageDetector`` with a dense head) the
head's convs are part of it too: its ``bbox_head`` becomes
:class:`HeadOutputs`, which decodes what the dense part computed with the
head's own ``predict_by_feat`` (box decoding and NMS stay fp32).
Deformable convs (mmcv's) are captured as custom ops and stay fp32
(:mod:`.deform_export`). ``torchao`` is imported only when int8 is asked
for.
"""
import functools
import hashlib
import json
import logging
import os
import zipfile
from contextlib import contextmanager
from typing import Any, Dict, Iterable, Iterator, Optional, Tuple

import torch
from torch import Tensor, nn
from torch.utils._pytree import tree_map

from ..errors import UserError
from .deform_export import exportable, is_deform_conv
from .deploy import is_mmcv_op

PRECISIONS = ('fp32', 'bf16', 'int8')
# What torch.export.save's extra files hold the record in.
RECORD_FILE = 'res2net_int8.json'
# The export's height and width: multiples of 32, from 96 to 4096 pixels
# (at 64 a detector's coarsest level would be 1 pixel, which torch.export
# specialises).
STRIDE, MIN_STEPS, MAX_STEPS = 32, 3, 128


def cpu_has(precision: str) -> bool:
    """Whether this CPU has the dot-product instructions of ``precision``:
    VNNI (AVX512_VNNI or AMX) for int8, AVX512_BF16 or AMX for bf16."""
    amx = torch.cpu._is_amx_tile_supported()
    if precision == 'int8':
        return torch.cpu._is_vnni_supported() or amx
    if precision == 'bf16':
        return torch.cpu._is_avx512_bf16_supported() or amx
    return True


def cpu_note(precision: str) -> Optional[str]:
    """One line when this CPU lacks ``precision``'s instructions, else None.

    int8 still runs there, on oneDNN's AVX2 int8 kernels; bf16 is emulated,
    many times slower than fp32 (docs/speed.md has both measured).
    """
    if cpu_has(precision):
        return None
    if precision == 'int8':
        return ('this CPU has no VNNI (AVX512_VNNI or AMX): int8 runs on '
                "oneDNN's AVX2 int8 kernels, slower than on a CPU with VNNI "
                '(docs/speed.md)')
    return ('this CPU has no AVX512_BF16 or AMX: bf16 is emulated here and '
            'runs many times slower than fp32 (docs/speed.md)')


class DensePart(nn.Module):
    """A detector's backbone followed by its neck (if any) and, in a
    one-stage detector, its head's convs: what the low precisions replace,
    as one module.

    Returns the neck's feature maps, or with a ``head`` what the head's
    ``forward`` returns (per output, one map per level).
    """

    def __init__(self,
                 backbone: nn.Module,
                 neck: Optional[nn.Module],
                 head: Optional[nn.Module] = None) -> None:
        super().__init__()
        self.backbone = backbone
        self.neck = neck
        self.head = head

    def forward(self, x: Tensor) -> Tuple[Any, ...]:
        feats = self.backbone(x)
        feats = tuple(self.neck(feats) if self.neck is not None else feats)
        if self.head is None:
            return feats
        return tuple(tuple(levels) for levels in self.head(feats))


class HeadOutputs(nn.Module):
    """A one-stage detector's ``bbox_head`` once its convs run in the dense
    part: ``predict`` gets the head's outputs instead of the features and
    decodes them as the head's own ``predict`` would."""

    def __init__(self, head: nn.Module) -> None:
        super().__init__()
        self.head = head

    def predict(self,
                outs: Tuple[Any, ...],
                batch_data_samples: list,
                rescale: bool = False) -> list:
        """The head's detections (mmdet's ``BaseDenseHead.predict`` after
        its ``forward``)."""
        metas = [sample.metainfo for sample in batch_data_samples]
        return self.head.predict_by_feat(
            *outs, batch_img_metas=metas, rescale=rescale)


def _dense_head(detector: nn.Module) -> Optional[nn.Module]:
    """A one-stage detector's dense head, else None (two-stage detectors'
    RPN and RoI heads, and DETR-like heads, stay as they are)."""
    from mmdet.models.dense_heads.base_dense_head import BaseDenseHead
    from mmdet.models.detectors import SingleStageDetector
    head = getattr(detector, 'bbox_head', None)
    if isinstance(detector, SingleStageDetector) and isinstance(
            head, BaseDenseHead):
        return head
    return None


def dense_part(detector: nn.Module) -> DensePart:
    """The detector's backbone, neck and (one-stage) head convs as one
    :class:`DensePart`."""
    return DensePart(detector.backbone, getattr(detector, 'neck', None),
                     _dense_head(detector))


def _install(detector: nn.Module, dense: DensePart, module: nn.Module) -> str:
    """Put ``module`` (``dense`` in a low precision) in place of the parts
    ``dense`` holds; what they are, for the report."""
    detector.backbone = module
    parts = 'backbone'
    if dense.neck is not None:
        detector.neck = nn.Identity()
        parts = 'backbone and neck'
    if dense.head is not None:
        detector.bbox_head = HeadOutputs(dense.head)
        parts = parts.replace(' and ', ', ') + ' and head convs'
    return parts


class Bf16Dense(nn.Module):
    """The dense part under bf16 autocast, compiled with freezing; fp32
    outputs."""

    def __init__(self, dense: nn.Module) -> None:
        super().__init__()
        self.dense = dense
        # Not a submodule: the same weights, once in the state dict.
        object.__setattr__(self, 'compiled', torch.compile(dense))

    def forward(self, x: Tensor) -> Tuple[Tensor, ...]:
        x = x.contiguous(memory_format=torch.channels_last)
        with torch.no_grad(), _freezing(), torch.autocast(
                'cpu', dtype=torch.bfloat16):
            out = self.compiled(x)
        return tree_map(lambda o: o.float(), tuple(out))


class Int8Dense(nn.Module):
    """An int8 program of the dense part, compiled with freezing at its
    first call; again at the first other image size, with dynamic height
    and width, and again where a size crosses a threshold that code guards
    on (docs/speed.md counts them)."""

    def __init__(self, program: nn.Module) -> None:
        super().__init__()
        self.program = program
        object.__setattr__(self, 'compiled', torch.compile(program))

    def train(self, mode: bool = True) -> 'Int8Dense':
        """Only the flag: an exported program runs as it was exported (in
        inference) and refuses ``train()``."""
        self.training = mode
        return self

    def forward(self, x: Tensor) -> Tuple[Tensor, ...]:
        x = x.contiguous(memory_format=torch.channels_last)
        with torch.no_grad(), _freezing():
            return tuple(self.compiled(x))


@contextmanager
def _freezing() -> Iterator[None]:
    # Inductor's freezing folds the weights into constants and packs them
    # for oneDNN; the int8 weight packing needs it set for the whole
    # compilation (as torch.compile's options it comes too late).
    with torch._inductor.config.patch(freezing=True):
        yield


@contextmanager
def _quiet_torchao() -> Iterator[None]:
    """Import torchao without its lines about CUDA kernels that a CPU-only
    torch cannot load (harmless: the x86 path uses torch's own oneDNN
    ops)."""
    loggers = [
        logging.getLogger(n) for n in ('torchao', 'torch.utils._pytree')
    ]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def _export(dense: nn.Module, example: Tensor):
    steps = torch.export.Dim('steps_h', min=MIN_STEPS, max=MAX_STEPS), \
        torch.export.Dim('steps_w', min=MIN_STEPS, max=MAX_STEPS)
    return torch.export.export(
        dense, (example, ),
        dynamic_shapes={'x': {
            2: STRIDE * steps[0],
            3: STRIDE * steps[1]
        }})


# Modules whose every call is one node of an exported graph, so that each
# call can be a pattern of its own (by their class names: the graph's
# metadata holds classes or their names).
_ONE_NODE_MODULES = ('Conv2d', 'ReLU')


def _split_shared_modules(graph_module: torch.fx.GraphModule) -> None:
    """Give each call of a shared conv or ReLU its own module in the
    graph's metadata.

    The quantizer groups a graph's nodes by the module they came from: one
    ``nn.ReLU`` called three times (as mmdet's ResNet bottleneck does), or
    one conv run on every level (a one-stage head's), would be one pattern
    with several outputs, which it refuses. Each such call is one node with
    the module's weights as its inputs: a pattern of its own.
    """
    for node in graph_module.graph.nodes:
        # Where the quantizer reads a node's module: the innermost entry of
        # its module stack (or, in graphs that have it, its source stack).
        stack = node.meta.get('nn_module_stack')
        if stack:
            key, (fqn, cls) = list(stack.items())[-1]
            if _one_node(cls):
                stack[key] = (f'{fqn}.{node.name}', cls)
        sources = node.meta.get('source_fn_stack')
        if sources and _one_node(sources[-1][1]):
            name, target = sources[-1]
            node.meta['source_fn_stack'] = sources[:-1] + [
                (f'{name}.{node.name}', target)
            ]


def _one_node(cls: Any) -> bool:
    if isinstance(cls, type):
        return any(
            base.__name__ in _ONE_NODE_MODULES
            and base.__module__.startswith('torch.nn') for base in cls.__mro__)
    return isinstance(cls, str) and cls.startswith('torch.nn.') and \
        cls.rsplit('.', 1)[-1] in _ONE_NODE_MODULES


def check_quantizable(dense: nn.Module) -> None:
    """Refuse a dense part that the export cannot capture.

    Raises:
        UserError: It holds mmcv's compiled ops other than the deformable
            convs (which :mod:`.deform_export` captures, in fp32).
    """
    ops = sorted({
        type(m).__name__
        for m in dense.modules() if is_mmcv_op(m) and not is_deform_conv(m)
    })
    if ops:
        raise UserError(
            f'the backbone or neck holds mmcv ops ({", ".join(ops)}) that '
            'torch.export cannot capture: int8 and bf16 cover mmcv\'s '
            'deformable convs and no other mmcv op; test this one with '
            '--precision fp32')


def _deform_note(dense: nn.Module) -> str:
    count = sum(is_deform_conv(m) for m in dense.modules())
    return f'; {count} deformable convs kept in fp32' if count else ''


def quantize_int8(dense: nn.Module, calibration: Iterable[Tensor]):
    """The int8 program of ``dense``, calibrated on ``calibration``.

    Args:
        dense: An eval-mode fp32 module of one image tensor (N, 3, H, W),
            H and W multiples of 32 (BN folded or not: the quantizer folds
            what is left).
        calibration: Input tensors as the detector's data preprocessor
            gives them (normalised, padded to 32).

    Returns:
        The exported int8 program (``torch.export.ExportedProgram``), to run
        through :class:`Int8Dense` or to save with :func:`save_int8`.

    Raises:
        UserError: ``calibration`` is empty, or ``dense`` cannot be exported
            (:func:`check_quantizable`).
    """
    check_quantizable(dense)
    dense, deform_convs = exportable(dense)
    batches = iter(calibration)
    first = next(batches, None)
    if first is None:
        raise UserError('int8 calibration got no images; check the '
                        "config's train dataset")
    with _quiet_torchao():
        from torchao.quantization.pt2e.quantize_pt2e import (convert_pt2e,
                                                             prepare_pt2e)
        from torchao.quantization.pt2e.quantizer import \
            x86_inductor_quantizer as x86
    quantizer = x86.X86InductorQuantizer().set_global(
        x86.get_default_x86_inductor_quantization_config())
    for name in deform_convs:  # and their offset convs: fp32
        quantizer.set_module_name_qconfig(name, None)
    with torch.no_grad():
        dense.eval()  # (mmdet's ResNet.train returns None: no chaining)
        captured = _export(dense, first).module()
        _split_shared_modules(captured)
        observed = prepare_pt2e(captured, quantizer)
        observed(first)
        for batch in batches:
            observed(batch)
        program = convert_pt2e(observed)
        # Exported again: the form torch.export.save writes and a later run
        # loads, with the same dynamic height and width.
        return _export(program, first)


def file_sha256(path: str) -> str:
    """The sha256 of a file, read in 1 MB blocks once per process while
    the file is unchanged (a tool checks a program against its checkpoint
    before it builds anything, and the run checks it again: a second read
    of a 500 MB checkpoint costs about a second)."""
    stat = os.stat(path)
    return _sha256(os.path.realpath(path), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=8)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            digest.update(block)
    return digest.hexdigest()


# Settings of training and post-processing, not of the network a program
# computes; mmdet also copies them into the heads' configs when it builds a
# detector (DetInferencer's config holds them there afterwards).
_NOT_THE_NETWORK = ('train_cfg', 'test_cfg')


def _network(node: Any) -> Any:
    if isinstance(node, dict):
        return {
            k: _network(v)
            for k, v in node.items() if k not in _NOT_THE_NETWORK
        }
    if isinstance(node, (list, tuple)):
        return [_network(v) for v in node]
    return node


def model_digest(model_cfg: Any) -> str:
    """A short digest of a config's ``model`` dict: which network (its
    ``train_cfg`` and ``test_cfg``, at any depth, left out)."""
    text = json.dumps(_network(model_cfg), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def save_int8(program, path: str, record: Dict[str, Any]) -> None:
    """Write the int8 program and its record to ``path``, whole or not at
    all (a temporary file renamed)."""
    # (torch.export.save warns unless the name ends in .pt2)
    tmp = f'{path}.tmp{os.getpid()}.pt2'
    try:
        torch.export.save(
            program, tmp, extra_files={RECORD_FILE: json.dumps(record)})
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def read_record(path: str) -> Dict[str, Any]:
    """The record of an int8 program file, without loading the program.

    Raises:
        UserError: The file is missing or is not such a program.
    """
    if not os.path.isfile(path):
        raise UserError(f'int8 program not found: {path}; write it with '
                        'tools/deployment/quantize.py CONFIG CHECKPOINT')
    try:
        with zipfile.ZipFile(path) as archive:
            name = next(n for n in archive.namelist()
                        if n.endswith(f'extra/{RECORD_FILE}'))
            return json.loads(archive.read(name))
    except (zipfile.BadZipFile, StopIteration, ValueError):
        raise UserError(f'{path} is not an int8 program of this project; '
                        'write one with tools/deployment/quantize.py '
                        'CONFIG CHECKPOINT') from None


def check_record(record: Dict[str, Any], path: str, *, checkpoint: str,
                 sha256: str, model: str) -> None:
    """Refuse a program made from another checkpoint or model.

    Raises:
        UserError: One line naming both.
    """
    if record.get('checkpoint_sha256') != sha256:
        raise UserError(
            f'{path} was made from {record.get("checkpoint")} (sha256 '
            f'{str(record.get("checkpoint_sha256"))[:12]}), not from '
            f'{checkpoint} (sha256 {sha256[:12]}); quantize this checkpoint '
            'with tools/deployment/quantize.py')
    if record.get('model_digest') != model:
        raise UserError(
            f'{path} was made for the model of {record.get("config")}, not '
            'this config\'s; quantize with tools/deployment/quantize.py and '
            'this config')


def check_int8_program(path: str, model_cfg: Any,
                       checkpoint: str) -> Dict[str, Any]:
    """The record of the program at ``path``, after checking that it was
    made from ``checkpoint`` and the model ``model_cfg``.

    Raises:
        UserError: A missing or foreign file, or one made from another
            checkpoint or model (:func:`check_record`).
    """
    record = read_record(path)
    check_record(
        record,
        path,
        checkpoint=checkpoint,
        sha256=file_sha256(checkpoint),
        model=model_digest(model_cfg))
    return record


def load_int8(path: str):
    """The int8 program saved at ``path`` (checked with
    :func:`check_record` first)."""
    with _quiet_torchao():
        import torchao.quantization.pt2e  # noqa: F401  (its ops' kernels)
    return torch.export.load(path)


def int8_record(*, config: str, checkpoint: str, model_cfg: Any,
                calib_images: int, calib_data: str) -> Dict[str, Any]:
    """What an int8 program file records of how it was made."""
    return dict(
        precision='int8',
        config=config,
        checkpoint=checkpoint,
        checkpoint_sha256=file_sha256(checkpoint),
        model_digest=model_digest(model_cfg),
        calib_images=calib_images,
        calib_data=calib_data,
        torch=torch.__version__)


def precision_plan(precision: str, *, device: str,
                   force: bool) -> Tuple[str, Optional[str]]:
    """The precision a tool runs when ``precision`` is asked for, and the
    line to print first (or None).

    bf16 on a CPU without bf16 instructions runs fp32 unless ``force``;
    int8 without VNNI runs, with its note (measured faster than fp32 there
    too, docs/speed.md).

    Raises:
        UserError: bf16 or int8 on a CUDA device.
    """
    if precision not in PRECISIONS:
        raise UserError(f'precision {precision!r}: use one of '
                        f'{", ".join(PRECISIONS)}')
    if precision == 'fp32':
        return precision, None
    if device != 'cpu':
        raise UserError(
            f'--precision {precision} is a deploy form for x86 CPUs '
            f'(oneDNN), not {device}: on a GPU test the fp32 form, or run '
            'on the CPU with CUDA_VISIBLE_DEVICES=')
    note = cpu_note(precision)
    if note and precision == 'bf16' and not force:
        return 'fp32', (f'{note}; running the fp32 form instead '
                        '(--force-precision runs bf16 anyway)')
    return precision, note


def in_precision(dense: nn.Module, precision: str, *, program=None):
    """``dense`` (an eval-mode :class:`DensePart` or backbone) as the module
    that runs it in bf16 or int8 (``program``: its int8 program).

    Raises:
        UserError: bf16 of a dense part with mmcv ops it cannot run
            (:func:`check_quantizable`).
    """
    if precision == 'bf16':
        check_quantizable(dense)
        return Bf16Dense(exportable(dense)[0])
    return Int8Dense(program.module())


def to_precision(detector: nn.Module, precision: str, *, program=None) -> str:
    """Put the detector's dense part in ``precision``, in place.

    Args:
        detector: An eval-mode detector with ``backbone`` (and ``neck``).
        precision: One of :data:`PRECISIONS`; ``fp32`` changes nothing.
        program: For int8 (and only for it), the program of this
            detector's dense part, from :func:`quantize_int8` or
            :func:`load_int8`.

    Returns:
        What was done, for the deploy report.

    Raises:
        UserError: An unknown precision, int8 without its program, or bf16
            of a dense part with mmcv ops it cannot run
            (:func:`check_quantizable`).
    """
    if precision not in PRECISIONS:
        raise UserError(f'precision {precision!r}: use one of '
                        f'{", ".join(PRECISIONS)}')
    if (program is None) == (precision == 'int8'):
        raise UserError('an int8 program goes with precision int8, and '
                        f'only with it (precision {precision})')
    if precision == 'fp32':
        return ''
    dense = dense_part(detector).eval()
    note = _deform_note(dense)
    parts = _install(detector, dense,
                     in_precision(dense, precision, program=program))
    how = 'autocast, compiled' if precision == 'bf16' else \
        'PT2E, x86 inductor quantizer'
    return f'{parts} in {precision} ({how}){note}'
