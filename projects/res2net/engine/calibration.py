# Copyright (c) Res2Net-MMDet contributors. All rights reserved.
"""Calibration images for the int8 form: the config's train images as the
test pipeline reads them (no augmentation), through the model's data
preprocessor, one at a time."""
from copy import deepcopy
from typing import Callable, Iterator

from mmdet.registry import DATASETS
from mmengine.config import ConfigDict
from mmengine.dataset import pseudo_collate
from mmengine.registry import init_default_scope
from torch import Tensor

from ..errors import UserError
from .cli import innermost


def check_calib_images(num_images: int) -> None:
    """Refuse fewer than one calibration image.

    Raises:
        UserError: ``num_images`` below 1.
    """
    if num_images < 1:
        raise UserError(f'--calib-images {num_images}: calibrate on at '
                        'least 1 image (default 32)')


def calibration_inputs(cfg: ConfigDict, preprocess: Callable[[dict], dict],
                       num_images: int) -> Iterator[Tensor]:
    """The first ``num_images`` train images, each an input tensor as the
    detector gets it in testing.

    Args:
        cfg: The run's config.
        preprocess: The detector's data preprocessor.
        num_images: How many (fewer if the split has fewer).

    Raises:
        UserError: ``num_images`` below 1.
    """
    check_calib_images(num_images)
    init_default_scope(cfg.get('default_scope', 'mmdet'))
    dataset_cfg = deepcopy(innermost(cfg.train_dataloader.dataset))
    dataset_cfg.pipeline = deepcopy(
        innermost(cfg.test_dataloader.dataset).pipeline)
    dataset = DATASETS.build(dataset_cfg)
    for index in range(min(num_images, len(dataset))):
        batch = preprocess(pseudo_collate([dataset[index]]), False)
        yield batch['inputs']
