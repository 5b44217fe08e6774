# Copyright (c) Res2Net-MMDet contributors. All rights reserved.
"""A trained detector (or backbone) in its deploy form.

The one place that turns a trained network into the form it is deployed in,
so that every tool measures the same thing: ``benchmark.py`` (speed),
``benchmark_backbone.py`` (backbone speed) and ``test.py --deploy`` (AP,
through :class:`~projects.res2net.engine.hooks.DeployHook`). Three steps,
each optional and each changing the outputs by float rounding only:

* :func:`fold_batch_norms` folds every eval-mode BatchNorm into the conv
  before it: mmcv's ``fuse_conv_bn`` for a conv and a BN that follow each
  other as children (stems, 1x1 convs, downsamples) and, for Res2Net's
  split 3x3 convs, which keep their convs and BNs in two parallel lists
  (``convs[i]``, ``bns[i]``) that mmcv's pass skips, each pair of them.
* :func:`to_channels_last` converts the weights to ``torch.channels_last``,
  except mmcv's compiled ops (RoIAlign, deformable convs), which read their
  tensors as contiguous NCHW.
* :func:`compile_modules` compiles the dense part (backbone and neck) with
  ``torch.compile`` and inductor's freezing, which constant-folds the
  weights and pre-packs them for the CPU's conv kernels. Detection heads
  (NMS, RoI sampling) stay eager: their shapes change with every image.

The state dict of a folded model has no entries for the folded BNs
(``nn.Identity`` has none) and a ``bias`` for each conv they were folded
into; every other entry keeps its key and shape.
"""
from typing import Any, Dict, Iterable, NamedTuple, Optional, Tuple

import torch
from mmcv.cnn import fuse_conv_bn as mmcv_fuse_conv_bn
from mmengine.model import is_model_wrapper
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.utils.fusion import fuse_conv_bn_eval

# The dense modules of a detector that torch.compile gets.
COMPILED_PARTS = ('backbone', 'neck')


class DeployReport(NamedTuple):
    """What :func:`deploy` did."""

    folded: int  # BatchNorm layers folded into convs
    left: int  # BatchNorm layers left (after a deformable conv, say)
    kept_nchw: int  # mmcv op modules kept in contiguous NCHW
    compiled: Tuple[str, ...]  # modules compiled

    def summary(self) -> str:
        """One line for a tool's output."""
        parts = [
            f'fused {self.folded} BatchNorm layers into convs '
            f'({self.left} left)'
        ] if self.folded or self.left else []
        if self.kept_nchw:
            parts.append(f'kept {self.kept_nchw} mmcv ops in NCHW')
        if self.compiled:
            parts.append(f'compiled {", ".join(self.compiled)}')
        return '; '.join(parts)


def _num_batch_norms(model: nn.Module) -> int:
    return sum(isinstance(m, _BatchNorm) for m in model.modules())


def fold_batch_norms(model: nn.Module) -> Tuple[int, int]:
    """Fold BatchNorm layers into the convs before them, in place.

    The model must be in eval mode: the running statistics are folded.

    Returns:
        How many BN layers were folded, and how many are left (those that
        follow no plain conv, e.g. after a deformable conv).
    """
    if any(m.training for m in model.modules()):
        raise ValueError('fold_batch_norms needs a model in eval mode: a '
                         'BatchNorm in training mode uses batch statistics '
                         'and its convs would be trained apart from it')
    before = _num_batch_norms(model)
    mmcv_fuse_conv_bn(model)
    for module in model.modules():
        convs = getattr(module, 'convs', None)
        bns = getattr(module, 'bns', None)
        if not (isinstance(convs, nn.ModuleList)
                and isinstance(bns, nn.ModuleList)):
            continue
        # A Res2Net block (ours or mmdet's) computes bns[i](convs[i](x)).
        for i, (conv, bn) in enumerate(zip(convs, bns)):
            if type(conv) is nn.Conv2d and isinstance(bn, _BatchNorm):
                convs[i] = fuse_conv_bn_eval(conv, bn)
                bns[i] = nn.Identity()
    left = _num_batch_norms(model)
    return before - left, left


def _contiguous_inputs(module: nn.Module, args: tuple) -> tuple:
    return tuple(arg.contiguous() if isinstance(arg, Tensor) else arg
                 for arg in args)


def is_mmcv_op(module: nn.Module) -> bool:
    """Whether ``module`` is one of mmcv's compiled ops (RoIAlign, DCN)."""
    return type(module).__module__.startswith('mmcv.ops')


def to_channels_last(model: nn.Module) -> int:
    """Convert the model to ``torch.channels_last``, except mmcv's ops.

    mmcv's compiled ops read their tensors as contiguous NCHW: on a
    channels-last input RoIAlign silently computes wrong features on the CPU
    and the deformable convs refuse it. Those modules (and their own
    submodules, e.g. a DCN's offset conv) stay contiguous and get
    contiguous copies of their inputs; an op that a head calls as a plain
    function is not covered.

    Returns:
        How many mmcv op modules were kept contiguous.
    """
    model.to(memory_format=torch.channels_last)
    kept = 0
    for module in model.modules():
        if is_mmcv_op(module):
            module.to(memory_format=torch.contiguous_format)
            module.register_forward_pre_hook(_contiguous_inputs)
            kept += 1
    return kept


def compile_modules(model: nn.Module,
                    parts: Iterable[str] = COMPILED_PARTS,
                    *,
                    options: Optional[Dict[str,
                                           Any]] = None) -> Tuple[str, ...]:
    """Compile the named children of ``model`` in place (or ``model``
    itself when it has none of them), for inference.

    ``nn.Module.compile`` keeps the modules and their state-dict keys.
    Inductor's ``freezing`` treats the weights as constants: compile after
    the weights are final, and run under ``torch.no_grad()``.

    Returns:
        The names of the compiled modules (``''`` for ``model`` itself).
    """
    options = dict(dict(freezing=True), **(options or {}))
    names = tuple(
        name for name in parts
        if isinstance(getattr(model, name, None), nn.Module))
    for name in names or ('', ):
        module = getattr(model, name) if name else model
        module.compile(options=options)
    return names or ('', )


def deploy(model: nn.Module,
           *,
           fold_bn: bool = True,
           channels_last: bool = True,
           compile: bool = False) -> DeployReport:
    """Put ``model`` in eval mode and in its deploy form, in place.

    Args:
        model: A detector or a backbone, its weights loaded.
        fold_bn: Fold BatchNorm layers into convs (:func:`fold_batch_norms`).
        channels_last: Convert to channels-last (:func:`to_channels_last`).
        compile: Compile the backbone and neck (:func:`compile_modules`).

    Returns:
        What was done.
    """
    if is_model_wrapper(model):
        model = model.module
    model.eval()
    folded, left = fold_batch_norms(model) if fold_bn else (0, 0)
    kept = to_channels_last(model) if channels_last else 0
    compiled = compile_modules(model) if compile else ()
    return DeployReport(folded, left, kept, compiled)
