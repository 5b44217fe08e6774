# Copyright (c) Res2Net-MMDet contributors. All rights reserved.
"""docs/inference.md, "Your own checkpoint" and "mmdet's tools": mmdet's
DetInferencer and mmdet's own tools, unchanged, on our configs and the
trained demo checkpoint."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import mmdet

DEMO = 'configs/demo/faster_rcnn_r2_50_fpn_demo.py'
# mmdet ships its tools inside the installed package.
MMDET_TOOLS = Path(mmdet.__file__).parent / '.mim' / 'tools'


def test_det_inferencer_on_an_image_and_a_folder(trained_demo, tmp_path):
    from mmdet.apis import DetInferencer
    inferencer = DetInferencer(
        model=DEMO, weights=str(trained_demo.checkpoint), device='cpu')
    images = sorted((trained_demo.root / 'data' / 'val2017').iterdir())
    image = images[0]
    result = inferencer(
        str(image), out_dir=str(tmp_path / 'one'), no_save_pred=False)
    prediction, = result['predictions']
    assert max(prediction['scores']) > 0.5  # the trained demo finds objects
    assert set(prediction['labels']) <= {32, 33, 62}  # ball, kite, tv
    assert (tmp_path / 'one' / 'vis' / image.name).is_file()
    saved = json.loads(
        (tmp_path / 'one' / 'preds' / f'{image.stem}.json').read_text())
    assert saved['labels'] == prediction['labels']

    folder = tmp_path / 'images'
    folder.mkdir()
    for path in images[:3]:
        shutil.copy(path, folder)
    result = inferencer(
        str(folder), out_dir=str(tmp_path / 'many'), no_save_pred=False)
    assert len(result['predictions']) == 3
    assert sorted(p.name for p in (tmp_path / 'many' / 'vis').iterdir()) == \
        [p.name for p in images[:3]]
    assert len(list((tmp_path / 'many' / 'preds').glob('*.json'))) == 3


def _mmdet_tool(repo, tool: str, *args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable,
         str(MMDET_TOOLS / tool), *map(str, args)],
        cwd=repo,
        env=dict(os.environ, MPLBACKEND='Agg'),
        capture_output=True,
        text=True,
        timeout=600)


def test_mmdet_tools_run_on_our_configs(repo, tiny_demo_data, tmp_path):
    result = _mmdet_tool(repo, 'misc/print_config.py', DEMO)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "type='Res2NetBackbone'" in result.stdout

    # mmdet's tools do not move the dataset paths with data_root.
    data = f'train_dataloader.dataset.data_root={tiny_demo_data}/'
    result = _mmdet_tool(repo, 'analysis_tools/browse_dataset.py', DEMO,
                         '--output-dir', tmp_path / 'browse', '--not-show',
                         '--show-interval', 0, '--cfg-options', data)
    assert result.returncode == 0, result.stderr[-3000:]
    drawn = sorted(p.name for p in (tmp_path / 'browse').iterdir())
    assert drawn == ['000000000001.png', '000000000002.png']
