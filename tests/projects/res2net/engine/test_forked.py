# Copyright (c) Res2Net-MMDet contributors. All rights reserved.
"""A script run in a process forked from the preloaded fork server."""
import os

from projects.res2net.engine.forked import run_script

SCRIPT = '''
import atexit, os, sys
import torch  # imported by the server already
atexit.register(lambda: print('exit handler ran'))
print(sys.argv[1:], os.getcwd(), os.environ['FORKED_TEST'])
print('to stderr', file=sys.stderr)
sys.exit(int(sys.argv[1]))
'''


def test_a_script_runs_as_python_would(tmp_path, monkeypatch):
    """Its arguments, the caller's working directory and environment at the
    call (not the server's of its start), both streams in the log, its exit
    status, and the interpreter's exit handlers."""
    script = tmp_path / 'script.py'
    script.write_text(SCRIPT)
    log = tmp_path / 'out.log'
    for code in (0, 3):
        monkeypatch.chdir(tmp_path)
        monkeypatch.setenv('FORKED_TEST', f'value {code}')
        assert run_script(str(script), [str(code)], log=str(log)) == code
        # The two streams' lines interleave as their buffers flush.
        assert sorted(log.read_text().splitlines()) == sorted([
            f"['{code}'] {tmp_path} value {code}", 'to stderr',
            'exit handler ran'
        ])
    assert 'FORKED_TEST' in os.environ  # the caller's is untouched


def test_an_uncaught_exception_is_status_1_with_its_traceback(tmp_path):
    script = tmp_path / 'script.py'
    script.write_text('raise ValueError("broken input")\n')
    log = tmp_path / 'out.log'
    assert run_script(str(script), [], log=str(log)) == 1
    assert 'ValueError: broken input' in log.read_text()
