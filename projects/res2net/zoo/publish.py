# Copyright (c) Res2Net-MMDet contributors. All rights reserved.
"""Publishing a trained checkpoint: weights and meta only, named by its hash.

As mmdet's ``publish_model.py``: the optimizer, the parameter schedulers and
the message hub are dropped (``state_dict`` and ``meta`` stay), and the file
is written as ``OUT-<first 8 hex digits of its sha256>.pth``, so that its
name says which bytes it holds. Unlike it, the slim file is then loaded back
with torch's weights-only loader, strictly, into the model of the config it
was trained with: a file that would not load is removed again.

Each publication is recorded beside its source checkpoint, in
``published.json`` of the work dir, so that the model-zoo table
(:func:`projects.res2net.zoo.table.read_run`) links the published file
instead of the training checkpoint, and a second publication of the same
checkpoint is not needed.
"""
import hashlib
import io
import os
import os.path as osp
from dataclasses import asdict, dataclass
from typing import Dict, Optional, Tuple

import torch
from mmengine.config import Config

from ..engine.cli import build_detector
from ..engine.fileio import read_json, write_bytes, write_json
from ..errors import CheckpointError, UserError
from ..models.checkpoint import read_checkpoint
from ..paths import PUBLISHED_JSON

_FIX = 'pass a checkpoint that tools/train.py wrote'


@dataclass(frozen=True)
class Published:
    """A published file and the checkpoint it came from.

    Attributes:
        file: The published ``OUT-<sha8>.pth``.
        sha256: Its sha256 (the name carries the first 8 hex digits).
        source_size: The source checkpoint's size in bytes and
        source_mtime_ns: its modification time, when it was published: a
            source rewritten since (a resumed run) is published again.
        dropped: The keys of the source that the file leaves out.
        model: The class of the detector it loaded into, strictly.
    """

    file: str
    sha256: str
    source_size: int
    source_mtime_ns: int
    dropped: Tuple[str, ...]
    model: str


def published_name(out_file: str, digest: str) -> str:
    """``OUT-<sha8>.pth`` for the file whose sha256 is ``digest``."""
    stem = out_file[:-len('.pth')] if out_file.endswith('.pth') else out_file
    return f'{stem}-{digest[:8]}.pth'


def slim(checkpoint: dict) -> dict:
    """The checkpoint without optimizer, schedulers and message hub."""
    return {
        'state_dict': checkpoint['state_dict'],
        'meta': checkpoint.get('meta') or {}
    }


def _source_stamp(path: str) -> Tuple[int, int]:
    stat = os.stat(path)
    return stat.st_size, stat.st_mtime_ns


def _read_record(work_dir: str) -> Dict[str, dict]:
    record = read_json(
        osp.join(work_dir, PUBLISHED_JSON),
        what='a record of publish_model.py',
        fix='delete it and publish again')
    return record if isinstance(record, dict) else {}


def published_file(checkpoint: str) -> Optional[str]:
    """The published file of ``checkpoint``, if it was published as it is.

    None when it was never published, when the published file is gone, or
    when the checkpoint was rewritten since (its size or time differ).
    """
    entry = _read_record(osp.dirname(checkpoint)
                         or '.').get(osp.basename(checkpoint))
    if not entry or not osp.isfile(checkpoint) or \
            not osp.isfile(entry.get('file', '')):
        return None
    if _source_stamp(checkpoint) != (entry.get('source_size'),
                                     entry.get('source_mtime_ns')):
        return None
    return entry['file']


def publish(in_file: str,
            out_file: str,
            cfg: Optional[Config] = None) -> Published:
    """Publish ``in_file`` as ``OUT-<sha8>.pth`` and record it.

    Args:
        in_file: A checkpoint that ``tools/train.py`` wrote.
        out_file: The name to publish under; ``-<sha8>`` is added.
        cfg: The config to check the weights against; default: the config
            recorded in the checkpoint's meta.

    Raises:
        CheckpointError: ``in_file`` is no training checkpoint, or the slim
            file does not load strictly into the config's model (it is
            removed again: nothing is published).
        UserError: No config given and none recorded in the meta.
    """
    checkpoint = read_checkpoint(in_file, what='checkpoint', fix=_FIX)
    if 'state_dict' not in checkpoint:
        raise CheckpointError(f'{in_file} has no state_dict; {_FIX}')
    published = slim(checkpoint)
    if cfg is None:
        recorded = published['meta'].get('cfg')
        if not isinstance(recorded, str):
            raise UserError(f'{in_file} records no config in its meta; pass '
                            'the one it was trained with: --config CONFIG')
        cfg = Config.fromstring(recorded, file_format='.py')

    buffer = io.BytesIO()
    torch.save(published, buffer)
    data = buffer.getvalue()
    digest = hashlib.sha256(data).hexdigest()
    path = published_name(out_file, digest)

    write_bytes(path, data)
    try:
        # mmengine's loader, weights-only, strict: as a user would load it.
        model = build_detector(cfg, path)
    except CheckpointError as err:
        os.remove(path)
        raise CheckpointError(
            f'not published, the file is removed: {err}') from err
    except BaseException:
        os.remove(path)
        raise
    result = Published(
        osp.abspath(path), digest, *_source_stamp(in_file),
        tuple(sorted(set(checkpoint) - set(published))),
        type(model).__name__)
    _record(in_file, result)
    return result


def _record(in_file: str, published: Published) -> None:
    """Add ``published`` to the ``published.json`` beside ``in_file``."""
    work_dir = osp.dirname(in_file) or '.'
    record = _read_record(work_dir)
    entry = asdict(published)
    entry['dropped'] = list(entry['dropped'])
    record[osp.basename(in_file)] = entry

    write_json(osp.join(work_dir, PUBLISHED_JSON), record)
