# Copyright (c) Res2Net-MMDet contributors. All rights reserved.
"""demo/image_demo.py: the README's picture command still draws the
picture, and a bad input ends in one line before anything is written."""
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import List, Tuple

import cv2
import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
PICTURE = 'docs/images/demo_detections.png'


def _picture_command() -> Tuple[List[str], str]:
    """The README's command that writes its picture of detections: the
    ```bash block after the picture, as words, and the file its comment
    says it writes."""
    text = (REPO / 'README.md').read_text(encoding='utf-8')
    after = text[text.index(f'<img src="{PICTURE}"'):]
    block = re.search(r'^```bash\n(.*?)^```', after, re.S | re.M).group(1)
    writes = re.search(r'# writes (\S+)', block).group(1)
    return shlex.split(block.replace('\\\n', ' '), comments=True), writes


def _on_the_trained_demo(words: List[str], trained_demo) -> List[str]:
    """The README's command on the trained demo: its checkpoint, its data,
    this interpreter, the repo's files (it runs elsewhere)."""
    assert words[:2] == ['python', 'demo/image_demo.py'], words
    data = str(trained_demo.root / 'data') + '/'
    args = [w.replace('data/demo/', data, 1) for w in words[2:]]
    weights = args.index('--weights') + 1
    args[weights] = str(trained_demo.checkpoint)
    args = [str(REPO / a) if (REPO / a).is_file() else a for a in args]
    return [sys.executable, str(REPO / 'demo' / 'image_demo.py'), *args]


def test_readme_picture_command_draws_the_detections(trained_demo, tmp_path):
    """Run as the README shows it, from another folder (the out dir is its
    default, ``outputs``): the file its comment names is written, drawn
    over the input, and the predictions beside it hold a confident one."""
    words, writes = _picture_command()
    assert '--no-save-pred' not in words and '--out-dir' not in words
    command = _on_the_trained_demo(words, trained_demo)
    result = subprocess.run(
        command,
        cwd=tmp_path,
        env=dict(os.environ, MPLBACKEND='Agg'),
        capture_output=True,
        text=True,
        timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr
    image = Path(command[2])
    drawn = tmp_path / writes
    assert drawn.name == image.name and drawn.parent.name == 'vis'
    assert drawn.is_file(), sorted(map(str, tmp_path.rglob('*')))
    source, picture = cv2.imread(str(image)), cv2.imread(str(drawn))
    assert picture.shape == source.shape
    assert np.mean(picture != source) > 0.01  # boxes and labels drawn
    preds = drawn.parent.parent / 'preds' / f'{image.stem}.json'
    assert max(json.loads(preds.read_text())['scores']) > 0.5


def test_missing_image_is_one_line(call_tool, trained_demo, user_error,
                                   tmp_path):
    words, _ = _picture_command()
    args = _on_the_trained_demo(words, trained_demo)[2:]
    args[0] = str(tmp_path / 'missing.png')
    out_dir = tmp_path / 'outputs'
    # In this process: tools/../demo is the script.
    result = call_tool('../demo/image_demo.py', *args, '--out-dir', out_dir)
    line = user_error(result, 'input not found', 'missing.png')
    assert result.stderr.strip() == line
    assert not out_dir.exists()


def test_checkpoint_of_another_model_is_one_line(call_tool, trained_demo,
                                                 user_error, tmp_path):
    """DetInferencer would load it non-strictly and draw boxes anyway."""
    words, _ = _picture_command()
    args = _on_the_trained_demo(words, trained_demo)[2:]
    other = tmp_path / 'other.pth'
    torch.save({'state_dict': {'fc.weight': torch.zeros(2, 2)}}, other)
    args[args.index('--weights') + 1] = str(other)
    out_dir = tmp_path / 'outputs'
    result = call_tool('../demo/image_demo.py', *args, '--out-dir', out_dir)
    user_error(result, 'other.pth does not fit', 'missing keys')
    assert not out_dir.exists()


def test_help_ends_with_an_example(call_tool):
    result = call_tool('../demo/image_demo.py', '--help')
    assert result.returncode == 0, result.stderr[-2000:]
    example = result.stdout.rsplit('example:', 1)[-1]
    assert 'python demo/image_demo.py' in example


def test_mmdets_default_device_without_a_gpu_is_one_line(
        call_tool, trained_demo, user_error, tmp_path):
    """mmdet's image demo defaults to ``--device cuda:0``: copied onto a
    machine where torch sees no GPU, one line says to use the CPU."""
    if torch.cuda.is_available():
        pytest.skip('torch sees a GPU here: --device cuda:0 runs on it')
    words, _ = _picture_command()
    args = _on_the_trained_demo(words, trained_demo)[2:]
    args[args.index('--device') + 1] = 'cuda:0'
    out_dir = tmp_path / 'outputs'
    result = call_tool('../demo/image_demo.py', *args, '--out-dir', out_dir)
    user_error(result, '--device cuda:0: no CUDA device', '--device cpu')
    assert not out_dir.exists()
