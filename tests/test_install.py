# Copyright (c) Res2Net-MMDet contributors. All rights reserved.
"""The install into an existing mmdet environment (``pip install -e .``):
the configs' ``custom_imports`` find ``projects.res2net`` from any working
directory, without PYTHONPATH."""
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# Run in a fresh interpreter: the config's custom_imports import the
# project, the registry builds the backbone (on the meta device: its
# structure, not its weights), and the editable install says where from.
PROBE = '''
import json, sys
from importlib.metadata import distribution
import torch
from mmengine.config import Config
cfg = Config.fromfile(sys.argv[1])
from mmdet.registry import MODELS
from mmdet.utils import register_all_modules
register_all_modules()
with torch.device('meta'):
    backbone = MODELS.build(cfg.model.backbone)
import projects.res2net
print(json.dumps(dict(
    imports=cfg.custom_imports['imports'],
    is_ours=type(backbone) is projects.res2net.Res2NetBackbone,
    depth=backbone.depth,
    file=projects.res2net.__file__,
    install=json.loads(distribution('res2net-mmdet').read_text(
        'direct_url.json')))))
'''


def test_custom_imports_resolve_from_another_directory(tmp_path):
    # A projects/ folder of its own on sys.path, as an mmdetection clone
    # has (mmdet's projects, a namespace package): ours still resolves.
    (tmp_path / 'projects').mkdir()
    env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
    config = REPO / 'configs' / 'htc_r2_101_fpn_20e.py'
    command = [sys.executable, '-c', PROBE, str(config)]
    result = subprocess.run(
        command,
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    found = json.loads(result.stdout.strip().splitlines()[-1])
    assert found['imports'] == ['projects.res2net']
    assert found['is_ours'] and found['depth'] == 101
    assert Path(found['file']).resolve() == \
        REPO / 'projects' / 'res2net' / '__init__.py'
    # pip install -e . (make install: --no-build-isolation --no-deps -e .)
    assert found['install']['dir_info'] == {'editable': True}
    assert Path(found['install']['url'].removeprefix('file://')) == REPO
