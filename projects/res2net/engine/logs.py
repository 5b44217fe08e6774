# Copyright (c) Res2Net-MMDet contributors. All rights reserved.
"""Finding and reading the scalar log that mmengine's Runner writes.

A run of the Runner writes into ``WORK_DIR/<timestamp>/`` (the time it
started, ``%Y%m%d_%H%M%S``), its visualizer's files into ``vis_data/``:
the dumped ``config.py`` and ``scalars.json``, which holds one JSON dict
per line: a training window's means or a validation's metrics, each with
its ``step``. The zoo table reads the peak memory from it and
:mod:`projects.res2net.analysis.curves` the curves; both find the runs
here, so that the layout is known in one place.
"""
import glob
import json
import os.path as osp
from typing import List

from ..errors import UserError

# Where a run's visualizer writes, and its scalar log there.
VIS_DATA = 'vis_data'
SCALARS_JSON = 'scalars.json'


def scalars_path(run: str) -> str:
    """The ``scalars.json`` of a ``<timestamp>`` dir, whether or not it is
    there (a test run writes none)."""
    return osp.join(run, VIS_DATA, SCALARS_JSON)


def run_dirs(work_dir: str, holding: str) -> List[str]:
    """The Runner's ``<timestamp>`` dirs of a work dir whose ``vis_data/``
    holds ``holding``, oldest first.

    mmengine names a run's dir by the time it started, so the names sort
    by age. ``holding`` picks the runs that matter: ``config.py`` every
    run's (training or test), ``scalars.json`` only those that logged.

    Args:
        work_dir: The ``--work-dir`` of ``tools/train.py`` or
            ``tools/test.py``.
        holding: A file name under ``vis_data/``.
    """
    return sorted(
        path for path in glob.glob(osp.join(work_dir, '*_*'))
        if osp.isfile(osp.join(path, VIS_DATA, holding)))


def find_scalars(path: str, *, fix: str) -> str:
    """The ``scalars.json`` that a user means by ``path``.

    Users point at a run in whichever way is at hand: the file itself, its
    ``<timestamp>`` dir, or the work dir, which means its newest run that
    logged (a test run writes no scalars).

    Args:
        path: A ``scalars.json``, a ``<timestamp>`` dir or a work dir.
        fix: What the user can pass instead, for the message.

    Returns:
        The file.

    Raises:
        UserError: Nothing at ``path``, or no ``scalars.json`` under it.
    """
    if osp.isfile(path):
        return path
    if not osp.isdir(path):
        raise UserError(f'log not found: {path}; {fix}')
    runs = [path] if osp.isfile(scalars_path(path)) else []
    found = [scalars_path(run) for run in runs + run_dirs(path, SCALARS_JSON)]
    if not found:
        raise UserError(f'no {VIS_DATA}/{SCALARS_JSON} under {path} (a test '
                        f'run writes none); {fix}')
    # The newest by its dir's name, then by its time for equal names.
    return max(
        found,
        key=lambda file:
        (osp.basename(osp.dirname(osp.dirname(file))), osp.getmtime(file)))


def read_scalars(path: str, *, fix: str) -> List[dict]:
    """The logged dicts of a ``scalars.json``, in file order.

    A last line that does not parse is skipped: a running job may be
    writing it.

    Args:
        path: The file.
        fix: What the user can do about a damaged file, for the message.

    Raises:
        UserError: Another line that is not a JSON dict with a ``step``.
    """
    with open(path, encoding='utf-8') as f:
        lines = f.read().splitlines()
    records = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            if number == len(lines):
                break
            raise UserError(f'{path}, line {number}: not JSON ({err.msg}); '
                            f'{fix}') from err
        if not isinstance(record, dict) or 'step' not in record:
            raise UserError(f'{path}, line {number}: not a dict with a '
                            f'"step", as mmengine writes; {fix}')
        records.append(record)
    return records
