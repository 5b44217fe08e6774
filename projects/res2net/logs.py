# Copyright (c) Res2Net-MMDet contributors. All rights reserved.
"""Reading the scalar log that mmengine's Runner writes.

``WORK_DIR/<timestamp>/vis_data/scalars.json`` holds one JSON dict per line:
a training window's means or a validation's metrics, each with its
``step``. The zoo table reads the peak memory from it and
``analyze_logs.py`` the curves.
"""
import json
from typing import List

from .errors import UserError


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
