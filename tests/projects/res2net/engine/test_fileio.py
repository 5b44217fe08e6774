# Copyright (c) Res2Net-MMDet contributors. All rights reserved.
"""projects/res2net/engine/fileio.py: checkpoints written whole or not at
all."""
import json

import pytest
from mmengine.fileio import get_file_backend

from projects.res2net.engine import fileio
from projects.res2net.engine.fileio import (ATOMIC_BACKEND_ARGS,
                                            AtomicLocalBackend, write_json)


def test_mmengine_finds_the_backend_by_name(tmp_path):
    backend = get_file_backend(
        str(tmp_path / 'iter_4.pth'), backend_args=ATOMIC_BACKEND_ARGS)
    assert isinstance(backend, AtomicLocalBackend)
    backend.put(b'weights', str(tmp_path / 'iter_4.pth'))
    assert (tmp_path / 'iter_4.pth').read_bytes() == b'weights'
    assert [p.name for p in tmp_path.iterdir()] == ['iter_4.pth']


def test_a_save_cut_short_leaves_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / 'iter_4.pth'
    target.write_bytes(b'the whole earlier checkpoint')

    def cut_short(data: bytes, path: str) -> None:
        with open(path, 'wb') as f:
            f.write(data[:3])  # as far as a killed process got
        raise KeyboardInterrupt

    monkeypatch.setattr(fileio, '_write_synced', cut_short)
    with pytest.raises(KeyboardInterrupt):
        AtomicLocalBackend().put(b'a new checkpoint', str(target))
    assert target.read_bytes() == b'the whole earlier checkpoint'
    assert [p.name for p in tmp_path.iterdir()] == ['iter_4.pth']


def test_write_json_is_atomic(tmp_path):
    path = tmp_path / 'sub' / 'metrics.json'
    write_json(str(path), {'b': 1, 'a': 0.5})
    assert json.loads(path.read_text()) == {'a': 0.5, 'b': 1}
    assert not list(tmp_path.glob('sub/*.tmp'))
