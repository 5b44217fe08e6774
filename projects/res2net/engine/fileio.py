# Copyright (c) Res2Net-MMDet contributors. All rights reserved.
"""Files written whole or not at all (tool outputs, records, checkpoints),
and the JSON records that one tool writes into a work dir and another reads.

mmengine's ``LocalBackend.put`` writes a checkpoint straight to its final
name, so a run killed while saving leaves a truncated ``iter_N.pth`` that
looks like any other. :class:`AtomicLocalBackend`, registered in mmengine's
file backends as ``atomic_local``, writes it to a temporary name next to
it, flushes it to disk and renames it: a checkpoint file is whole or absent.
``tools/train.py`` saves checkpoints through it unless the config names
another backend (``default_hooks.checkpoint.backend_args``); mmengine
updates ``last_checkpoint`` only after the save, so ``--resume`` never
picks a checkpoint cut short.

Reading, :class:`RememberingYamlHandler` (mmengine's YAML file handler)
parses a text once per process.
"""
import hashlib
import json
import os
import os.path as osp
import pickle
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Union

from mmengine.fileio import LocalBackend, register_backend, register_handler
from mmengine.fileio.handlers import YamlHandler

from ..errors import UserError


def write_atomically(path: str, write: Callable[[str], Any]) -> None:
    """Call ``write(tmp)``, then move ``tmp`` to ``path``: a reader (or a
    crash) never sees half a file, and a failed write leaves nothing.

    ``tmp`` lies next to ``path`` (so the move is atomic) and keeps its
    extension, for writers that pick the format by it (``savefig``) or
    append one (``np.savez``). An ``OSError`` (a full disk, say) names
    ``path``.
    """
    folder = osp.dirname(osp.abspath(path))
    os.makedirs(folder, exist_ok=True)
    base, ext = osp.splitext(osp.basename(path))
    tmp = osp.join(folder, f'.{base}.tmp{ext}')
    try:
        write(tmp)
        os.replace(tmp, path)
    except OSError as err:
        if err.errno is not None and err.filename in (None, tmp):
            # Name the file the user asked for (a write into an open file
            # fails with no name at all).
            raise OSError(err.errno, err.strerror, path) from err
        raise
    finally:
        if osp.exists(tmp):
            os.remove(tmp)


def write_bytes(path: str, data: bytes) -> None:
    """Write ``data`` atomically."""

    def write(tmp: str) -> None:
        with open(tmp, 'wb') as f:
            f.write(data)

    write_atomically(path, write)


def write_text(path: str, text: str) -> None:
    """Write ``text`` (UTF-8) atomically."""
    write_bytes(path, text.encode('utf-8'))


def write_json(path: str, data: Mapping) -> None:
    """Write JSON atomically (keys sorted, indented), so that a reader never
    sees half a file."""
    write_text(path, json.dumps(data, indent=2, sort_keys=True) + '\n')


def read_json(path: str, *, what: str, fix: str) -> Optional[Any]:
    """The JSON in ``path``; None when there is no such file.

    Args:
        path: The file.
        what: What the file should be, for the message (``a record of
            zoo_slurm.py submit``).
        fix: What the user can do about a damaged file.

    Raises:
        UserError: The file cannot be read or is not JSON.
    """
    if not osp.isfile(path):
        return None
    try:
        with open(path, encoding='utf-8') as f:
            return json.load(f)
    except (OSError, ValueError) as err:
        raise UserError(f'{path} is not {what} ({err}); {fix}') from err


def _write_synced(data: bytes, path: str) -> None:
    """Write ``data`` and flush it to the disk before returning."""
    with open(path, 'wb') as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


@register_backend('atomic_local')
class AtomicLocalBackend(LocalBackend):
    """mmengine's local file backend, whose ``put`` is atomic."""

    def put(self, obj: bytes, filepath: Union[str, Path]) -> None:
        write_atomically(str(filepath), lambda tmp: _write_synced(obj, tmp))


# How tools/train.py's checkpoints are written when the config says nothing.
ATOMIC_BACKEND_ARGS = dict(backend='atomic_local')


@register_handler(['yaml', 'yml'])
class RememberingYamlHandler(YamlHandler):
    """mmengine's YAML handler, which parses each text once per process.

    Each time mmengine reads a config with an ``mmdet::`` base it looks the
    base up in mmdet's model index: it parses the index and the 101
    metafiles it names (0.43 MB of YAML, about 0.1 s), for the same answer.
    Here a text parsed before gives a fresh copy of what it gave then (a
    pickle of it, twenty times faster): equal objects, never the same ones,
    so a caller may change what it gets. Text whose objects do not pickle
    is parsed each time.
    """

    # Texts remembered, the least recently read forgotten first.
    MAX_TEXTS = 512

    def __init__(self) -> None:
        super().__init__()
        self._parsed: 'OrderedDict[tuple, bytes]' = OrderedDict()

    def load_from_fileobj(self, file, **kwargs) -> Any:
        text = file.read()
        data = text.encode() if isinstance(text, str) else text
        key = (hashlib.blake2b(data).digest(), repr(sorted(kwargs.items())))
        if key in self._parsed:
            self._parsed.move_to_end(key)
            return pickle.loads(self._parsed[key])
        obj = super().load_from_fileobj(text, **kwargs)
        try:
            self._parsed[key] = pickle.dumps(obj)
        except Exception:  # noqa: B902 # e.g. a !!python/object tag
            return obj
        if len(self._parsed) > self.MAX_TEXTS:
            self._parsed.popitem(last=False)
        return obj
