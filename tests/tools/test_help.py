# Copyright (c) Res2Net-MMDet contributors. All rights reserved.
"""Every Python tool answers ``--help`` with what it does and an example."""
from pathlib import Path

import pytest

TOOLS = Path(__file__).resolve().parents[2] / 'tools'


@pytest.mark.parametrize(
    'tool', sorted(str(p.relative_to(TOOLS)) for p in TOOLS.rglob('*.py')))
def test_help_ends_with_an_example(call_tool, tool):
    result = call_tool(tool, '--help')
    assert result.returncode == 0, result.stderr[-2000:]
    usage, _, rest = result.stdout.partition('\n\n')
    assert usage.startswith('usage: ')
    assert rest.strip(), 'no description'
    example = result.stdout.rsplit('example:', 1)[-1]
    assert f'python tools/{tool}' in example, result.stdout[-500:]
