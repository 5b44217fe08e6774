# Copyright (c) Res2Net-MMDet contributors. All rights reserved.
"""README.md's quick start, as shown, on the trained demo checkpoint served
over ``http://`` from this machine: the download path that a zoo URL takes
(mmengine's loader, torch's hub cache) runs for real."""
import json
import re
import shlex
from pathlib import Path
from typing import List, NamedTuple

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
DEMO = 'configs/demo/faster_rcnn_r2_50_fpn_demo.py'
BBOX_KEYS = ('mAP', 'mAP_50', 'mAP_75', 'mAP_s', 'mAP_m', 'mAP_l')


def _quick_start() -> str:
    text = (REPO / 'README.md').read_text(encoding='utf-8')
    return text.split('\n## Quick start\n', 1)[1].split('\n## ', 1)[0]


def _block(language: str) -> str:
    """The first ```language block of the quick start."""
    return re.search(rf'^```{language}\n(.*?)^```', _quick_start(),
                     re.S | re.M).group(1)


def _sub(pattern: str, replacement: str, text: str) -> str:
    """``re.sub`` of group 1 of ``pattern``, which must match once."""
    found = list(re.finditer(pattern, text, re.M))
    assert len(found) == 1, (pattern, text)
    start, end = found[0].span(1)
    return text[:start] + replacement + text[end:]


class Server(NamedTuple):
    url: str  # the trained demo checkpoint's URL
    requests: List[str]  # the paths asked for, in order


@pytest.fixture
def served_checkpoint(trained_demo, serve_http) -> Server:
    """The trained demo checkpoint on an HTTP server of this process, and
    torch's hub cache, where mmengine downloads it to, in ``tmp_path``."""
    checkpoint = trained_demo.checkpoint
    served = serve_http(checkpoint.parent)
    return Server(served.url + checkpoint.name, served.requests)


def _downloaded_once(server: Server) -> None:
    """One request for the checkpoint, now in the hub cache."""
    name = server.url.rsplit('/', 1)[1]
    assert [p.rsplit('/', 1)[1] for p in server.requests] == [name]
    assert Path(torch.hub.get_dir(), 'checkpoints', name).is_file()


def test_inferencer_snippet_with_a_url(served_checkpoint, trained_demo,
                                       tmp_path, monkeypatch):
    """The ```python block: the demo config for the zoo's, the served
    checkpoint for the zoo URL, a demo image for ``demo.jpg``; the drawn
    image lands where its comment says."""
    image = sorted((trained_demo.root / 'data' / 'val2017').iterdir())[0]
    code = _block('python')
    drawn = re.search(r'# boxes drawn in (\S+)', code).group(1)
    code = _sub(r"^url = '([^']+)'", served_checkpoint.url, code)
    code = _sub(r"DetInferencer\('([^']+)'", str(REPO / DEMO), code)
    code = _sub(r"inferencer\('([^']+)'", str(image), code)
    monkeypatch.chdir(tmp_path)
    exec(compile(code, 'README.md: quick start', 'exec'), {})
    assert (tmp_path / drawn.replace('demo.jpg', image.name)).is_file()
    _downloaded_once(served_checkpoint)


def test_test_py_with_a_url(served_checkpoint, call_tool, trained_demo,
                            demo_subset, quick, tmp_path):
    """The ```bash block: test.py on the served checkpoint gives the AP that
    the checkpoint's own file gives (on 10 of the demo's images; CPUs'
    thread counts may round the last digit differently)."""
    words = shlex.split(_block('bash').replace('\\\n', ' '))
    snippet = _block('python')
    config = re.search(r"DetInferencer\('([^']+)'", snippet).group(1)
    url = re.search(r"^url = '([^']+)'", snippet, re.M).group(1)
    assert words == ['python', 'tools/test.py', config, url]  # as above
    work_dir = tmp_path / 'work'
    result = call_tool('test.py', DEMO, served_checkpoint.url, '--work-dir',
                       work_dir, *quick(trained_demo.root / 'data'),
                       *demo_subset.options)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr
    metrics = json.loads((work_dir / 'metrics.json').read_text())['metrics']
    for key in BBOX_KEYS:
        assert metrics[f'coco/bbox_{key}'] == pytest.approx(
            demo_subset.metrics[f'coco/bbox_{key}'], abs=1e-3), key
    _downloaded_once(served_checkpoint)
