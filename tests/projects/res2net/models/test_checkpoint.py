# Copyright (c) Res2Net-MMDet contributors. All rights reserved.
"""projects/res2net/models/checkpoint.py: weights-only loading of mmengine
checkpoints stays safe (trap 1), the one reader's one-line errors, and
models built for a checkpoint without drawing their weights first."""
import argparse
import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from mmdet.registry import MODELS
from mmengine.config import Config
from mmengine.logging import HistoryBuffer
from torch import nn

import projects.res2net  # noqa: F401  (registers the allow-list)
from projects.res2net.errors import CheckpointError
from projects.res2net.models.checkpoint import (TRUST_VARIABLE, no_random_init,
                                                read_checkpoint)


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


def test_a_url_loads_as_a_local_file_does(tmp_path, serve_http, monkeypatch):
    """mmengine would fetch a URL (and an ``open-mmlab://`` name) with
    torch's hub loader, which unpickles in full: the project's loaders take
    them through the weights-only loader, into torch's hub cache."""
    files = tmp_path / 'zoo'
    files.mkdir()
    marker = tmp_path / 'ran'
    torch.save(
        dict(state_dict={}, meta=_RunsCode(str(marker))), files / 'evil.pth')
    torch.save(
        dict(
            state_dict={'w': torch.ones(1)}, meta=argparse.Namespace(epoch=3)),
        files / 'legacy.pth')
    served = serve_http(files)
    url = served.url + 'evil.pth'
    with pytest.raises(CheckpointError) as err:
        read_checkpoint(url, what='checkpoint', fix='fix')
    assert str(err.value) == (
        f'checkpoint {url} is refused: its pickle needs posix.mkdir, outside'
        ' the checkpoint allow-list; if you trust the file (it can run code '
        'when loaded), pass --trust-checkpoint')
    assert not marker.exists()
    # Downloaded once, into the cache torch's hub loader uses.
    assert (torch.hub.get_dir() / Path('checkpoints', 'evil.pth')).is_file()

    # An mmengine model name, resolved through MMENGINE_HOME's table.
    home = tmp_path / 'mmengine'
    home.mkdir()
    (home / 'open_mmlab.json').write_text(
        json.dumps({'legacy_model': served.url + 'legacy.pth'}))
    monkeypatch.setenv('MMENGINE_HOME', str(home))
    with pytest.raises(CheckpointError, match='argparse.Namespace'):
        read_checkpoint(
            'open-mmlab://legacy_model', what='checkpoint', fix='fix')
    monkeypatch.setenv(TRUST_VARIABLE, '1')  # what --trust-checkpoint sets
    ckpt = read_checkpoint(
        'open-mmlab://legacy_model', what='checkpoint', fix='fix')
    assert ckpt['meta'].epoch == 3
    # The second read came from the cache.
    assert [p.rsplit('/', 1)[1] for p in served.requests] == \
        ['evil.pth', 'legacy.pth']

    # A deprecated name is followed to the one that replaced it (mmengine's
    # table), for the download and for the hint where it cannot be had.
    (home / 'open_mmlab.json').write_text(
        json.dumps({'detectron/resnet50_caffe': served.url + 'gone.pth'}))
    with pytest.raises(CheckpointError) as err:
        read_checkpoint(
            'open-mmlab://resnet50_caffe', what='checkpoint', fix='fix')
    assert str(err.value).startswith(
        'cannot fetch checkpoint open-mmlab://resnet50_caffe (')
    assert str(err.value).endswith(
        f'); download {served.url}gone.pth to '
        f'{torch.hub.get_dir()}/checkpoints/gone.pth, or fix')
    assert served.requests[-1].endswith('/gone.pth')


def test_not_a_checkpoint(tmp_path):
    path = tmp_path / 'notes.pth'
    path.write_text('hello')
    with pytest.raises(
            CheckpointError,
            match=r'notes.pth is not a checkpoint \(\w+: .*\); '
            r'fix$'):
        read_checkpoint(str(path), what='checkpoint', fix='fix')


def _demo_detector_and_a_transformer_layer(repo) -> list:
    """The demo detector with mmdet's initialisation (normal_, xavier_),
    and PyTorch's transformer layer (xavier_uniform_, kaiming_uniform_)."""
    cfg = Config.fromfile(repo / 'configs/demo/faster_rcnn_r2_50_fpn_demo.py')
    detector = MODELS.build(cfg.model)
    detector.init_weights()
    layer = nn.TransformerEncoderLayer(32, 4, 64, batch_first=True)
    return [detector.eval(), layer.eval()]


def test_a_model_for_a_checkpoint_draws_nothing_and_works_as_loaded(repo):
    """No random draw for a parameter (the generator does not move), every
    buffer as in a normal build; loaded, the same outputs."""
    torch.manual_seed(0)
    built = _demo_detector_and_a_transformer_layer(repo)
    generator = torch.get_rng_state()
    with no_random_init():
        skipped = _demo_detector_and_a_transformer_layer(repo)
    assert torch.equal(torch.get_rng_state(), generator)
    for normal, empty in zip(built, skipped):
        buffers = dict(empty.named_buffers())
        for name, buffer in normal.named_buffers():
            assert torch.equal(buffers[name], buffer), name
        empty.load_state_dict(normal.state_dict(), strict=True)
    image, tokens = torch.rand(1, 3, 64, 64), torch.rand(1, 5, 32)
    with torch.no_grad():
        for a, b in zip(built[0].extract_feat(image),
                        skipped[0].extract_feat(image)):
            assert torch.equal(a, b)
        assert torch.equal(built[1](tokens), skipped[1](tokens))
    # Outside the context, a build draws again.
    _demo_detector_and_a_transformer_layer(repo)
    assert not torch.equal(torch.get_rng_state(), generator)
