# Copyright (c) Res2Net-MMDet contributors. All rights reserved.
"""projects/res2net/engine/fileio.py: checkpoints written whole or not at
all, a failed write named by the file asked for, YAML parsed once."""
import errno
import json

import pytest
import yaml
from mmengine.config import Config
from mmengine.fileio import get_file_backend, load

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


def test_a_full_disk_names_the_file_and_leaves_nothing(tmp_path):

    def fill_the_disk(tmp: str) -> None:
        with open(tmp, 'wb') as f:
            f.write(b'part')
        # What a write into an open file raises: no file name.
        raise OSError(errno.ENOSPC, 'No space left on device')

    target = tmp_path / 'iter_4.pth'
    with pytest.raises(OSError) as err:
        fileio.write_atomically(str(target), fill_the_disk)
    assert (err.value.errno, err.value.filename) == (errno.ENOSPC, str(target))
    assert list(tmp_path.iterdir()) == []


def test_write_json_is_atomic(tmp_path):
    path = tmp_path / 'sub' / 'metrics.json'
    write_json(str(path), {'b': 1, 'a': 0.5})
    assert json.loads(path.read_text()) == {'a': 0.5, 'b': 1}
    assert not list(tmp_path.glob('sub/*.tmp'))


def test_yaml_is_parsed_once_and_read_as_written(repo, tmp_path, monkeypatch):
    """A config on an mmdet:: base, read again, parses none of mmdet's
    model index; each read gets its own objects; a changed file is read
    anew."""
    parses = []
    parse = yaml.load
    monkeypatch.setattr(yaml, 'load',
                        lambda *a, **k: parses.append(1) or parse(*a, **k))
    config = repo / 'configs/faster_rcnn_r2_101_fpn_2x.py'
    first = Config.fromfile(config)
    parses.clear()
    assert Config.fromfile(config).to_dict() == first.to_dict()
    assert parses == []

    path = tmp_path / 'models.yml'
    path.write_text('Models:\n- Name: a\n  Epochs: 12\n')
    read = load(str(path))
    again = load(str(path))
    assert again == read == {'Models': [{'Name': 'a', 'Epochs': 12}]}
    again['Models'][0]['Epochs'] = 24  # a caller's change stays its own
    assert load(str(path))['Models'][0]['Epochs'] == 12
    path.write_text('Models:\n- Name: b\n')
    assert load(str(path)) == {'Models': [{'Name': 'b'}]}
