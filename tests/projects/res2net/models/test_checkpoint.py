# Copyright (c) Res2Net-MMDet contributors. All rights reserved.
"""projects/res2net/models/checkpoint.py: weights-only loading of mmengine
checkpoints stays safe (trap 1), and the one reader's one-line errors."""
import argparse
import os
import pickle

import numpy as np
import pytest
import torch
from mmengine.logging import HistoryBuffer

import projects.res2net  # noqa: F401  (registers the allow-list)
from projects.res2net.errors import CheckpointError
from projects.res2net.models.checkpoint import TRUST_VARIABLE, read_checkpoint


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


class _RunsCode:

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (self.marker, ))


def test_a_pickle_that_would_run_code_is_refused_unrun(tmp_path):
    marker = tmp_path / 'ran'
    path = tmp_path / 'evil.pth'
    torch.save(dict(state_dict={}, meta=_RunsCode(str(marker))), path)
    with pytest.raises(CheckpointError) as err:
        read_checkpoint(str(path), what='checkpoint', fix='fix')
    assert str(err.value) == (
        f'checkpoint {path} is refused: its pickle needs posix.mkdir, outside'
        ' the checkpoint allow-list; if you trust the file (it can run code '
        'when loaded), pass --trust-checkpoint')
    assert not marker.exists()


def test_a_trusted_legacy_file_loads_on_opt_in(tmp_path, monkeypatch):
    path = tmp_path / 'legacy.pth'
    torch.save(
        dict(
            state_dict={'w': torch.ones(1)}, meta=argparse.Namespace(epoch=3)),
        path)
    with pytest.raises(CheckpointError, match='argparse.Namespace'):
        read_checkpoint(str(path), what='checkpoint', fix='fix')
    monkeypatch.setenv(TRUST_VARIABLE, '1')  # what --trust-checkpoint sets
    assert read_checkpoint(
        str(path), what='checkpoint', fix='fix')['meta'].epoch == 3


def test_not_a_checkpoint(tmp_path):
    path = tmp_path / 'notes.pth'
    path.write_text('hello')
    with pytest.raises(
            CheckpointError,
            match=r'notes.pth is not a checkpoint \(\w+: .*\); '
            r'fix$'):
        read_checkpoint(str(path), what='checkpoint', fix='fix')
