# Copyright (c) Res2Net-MMDet contributors. All rights reserved.
"""The suite runs off any cluster: a caller's Slurm job does not reach the
tests (tests/conftest.py removes its variables), so a suite run inside a
batch job neither requeues that job nor turns its runs into resumes."""
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_a_slurm_job_s_variables_do_not_reach_the_tests(tmp_path):
    """The suite's own start (its conftest.py) inside a requeued batch
    job's environment: the test it runs sees none of the job's variables."""
    job = {
        'SLURM_JOB_ID': '4242',
        'SLURM_RESTART_COUNT': '1',
        'SLURM_PROCID': '0',
        'SBATCH_PARTITION': 'gpu',
        'SRUN_CPUS_PER_TASK': '4',
    }
    result = subprocess.run([
        sys.executable, '-m', 'pytest', '-p', 'no:cacheprovider', '-p',
        'no:xdist', '-q', f'{__file__}::test_what_a_test_sees'
    ],
                            cwd=REPO,
                            env=dict(os.environ, **job),
                            capture_output=True,
                            text=True,
                            timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr
    assert '1 passed' in result.stdout


def test_what_a_test_sees():
    """Run by the test above (alone it checks this session's environment):
    no Slurm variable, in this process or in what it starts."""
    seen = subprocess.run(
        [sys.executable, '-c', 'import os; print(*os.environ)'],
        capture_output=True,
        text=True,
        check=True).stdout.split()
    for names in (list(os.environ), seen):
        assert not [
            n for n in names
            if n.startswith(('SLURM_', 'SBATCH_', 'SALLOC_', 'SRUN_'))
        ]
