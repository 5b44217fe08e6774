# Copyright (c) Res2Net-MMDet contributors. All rights reserved.
"""Files written whole or not at all: tool outputs and checkpoints.

mmengine's ``LocalBackend.put`` writes a checkpoint straight to its final
name, so a run killed while saving leaves a truncated ``iter_N.pth`` that
looks like any other. :class:`AtomicLocalBackend`, registered in mmengine's
file backends as ``atomic_local``, writes it to a temporary name next to
it, flushes it to disk and renames it: a checkpoint file is whole or absent.
``tools/train.py`` saves checkpoints through it unless the config names
another backend (``default_hooks.checkpoint.backend_args``); mmengine
updates ``last_checkpoint`` only after the save, so ``--resume`` never
picks a checkpoint cut short.
"""
import os
import os.path as osp
from pathlib import Path
from typing import Any, Callable, Union

from mmengine.fileio import LocalBackend, register_backend


def write_atomically(path: str, write: Callable[[str], Any]) -> None:
    """Call ``write(tmp)``, then move ``tmp`` to ``path``: a reader (or a
    crash) never sees half a file, and a failed write leaves nothing.

    ``tmp`` lies next to ``path`` (so the move is atomic) and keeps its
    extension, for writers that pick the format by it (``savefig``) or
    append one (``np.savez``).
    """
    folder = osp.dirname(osp.abspath(path))
    os.makedirs(folder, exist_ok=True)
    base, ext = osp.splitext(osp.basename(path))
    tmp = osp.join(folder, f'.{base}.tmp{ext}')
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if osp.exists(tmp):
            os.remove(tmp)


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
