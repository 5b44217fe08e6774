# Copyright (c) Res2Net-MMDet contributors. All rights reserved.
"""Weights-only loading of mmengine checkpoints stays safe (trap 1)."""
import pickle

import numpy as np
import pytest
import torch
from mmengine.logging import HistoryBuffer

import projects.res2net  # noqa: F401  (registers the allow-list)


class NotAllowed:
    """A stand-in for any class a malicious pickle might name."""


def test_message_hub_contents_load_weights_only(tmp_path):
    buffer = HistoryBuffer()
    buffer.update(0.5)
    buffer.update(np.float64(0.25))
    state = {
        'message_hub': {
            'log_scalars': {
                'train/loss': buffer
            },
            'runtime_info': {
                'iter': np.int64(3),
                'scale': np.float32(1.5),
                'flags': np.array([True, False]),
            },
        },
        'state_dict': {
            'w': torch.ones(2)
        },
    }
    path = tmp_path / 'ckpt.pth'
    torch.save(state, path)
    loaded = torch.load(path, weights_only=True)
    restored = loaded['message_hub']['log_scalars']['train/loss']
    assert isinstance(restored, HistoryBuffer)
    assert restored.mean() == pytest.approx(0.375)
    assert loaded['message_hub']['runtime_info']['iter'] == 3
    assert loaded['message_hub']['runtime_info']['flags'].tolist() == [
        True, False
    ]


@pytest.mark.parametrize(
    'payload, reason',
    [
        (NotAllowed(), 'Weights only load'),
        # Pickled as getattr(HistoryBuffer, 'update'): only the statistics
        # methods that mmengine itself stores may be looked up.
        (HistoryBuffer.update, 'not allowed in a checkpoint'),
    ])
def test_anything_else_is_still_refused(tmp_path, payload, reason):
    path = tmp_path / 'evil.pth'
    torch.save({'payload': payload}, path)
    with pytest.raises(pickle.UnpicklingError, match=reason):
        torch.load(path, weights_only=True)
