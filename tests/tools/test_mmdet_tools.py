# Copyright (c) Res2Net-MMDet contributors. All rights reserved.
"""docs/useful_tools.md, "mmdet's own tools": mmdet's tools, unchanged, as
scripts of the installed mmdet, on our configs and on what our tools wrote
for the trained demo detector (one ``tools/test.py --out`` run shared)."""
import ast
import json
import shutil
from pathlib import Path
from subprocess import CompletedProcess
from typing import Callable

import mmdet
import mmengine
import pytest
from mmdet.datasets import CocoDataset
from PIL import Image

DEMO = 'configs/demo/faster_rcnn_r2_50_fpn_demo.py'
# mmdet ships its tools inside the installed package.
MMDET_TOOLS = Path(mmdet.__file__).parent / '.mim' / 'tools'
# What the demo draws, as mmdet's COCO labels: sports ball, kite, tv.
DEMO_LABELS = {32, 33, 62}


@pytest.fixture
def mmdet_tool(call_tool, monkeypatch) -> Callable[..., CompletedProcess]:
    """``mmdet_tool(tool, *args)`` runs ``mmdet/.mim/tools/<tool>`` as
    ``python PATH ARGS`` from the repo root, in this process (``call_tool``:
    mmdet's script as it is, without an interpreter's start and imports),
    matplotlib without a display."""
    monkeypatch.setenv('MPLBACKEND', 'Agg')
    return lambda tool, *args: call_tool(MMDET_TOOLS / tool, *args)


def _test_set(outputs) -> list:
    """mmdet's tools do not move the dataset paths with ``data_root=``:
    the test set's own, and the evaluator's annotation file, of
    ``outputs`` (the ``tested_demo`` fixture)."""
    return [
        f'test_dataloader.dataset.data_root={outputs.data}/',
        f'val_evaluator.ann_file={outputs.ann_file}'
    ]


def test_print_config_and_browse_dataset(mmdet_tool, tiny_demo_data, tmp_path):
    result = mmdet_tool('misc/print_config.py', DEMO)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "type='Res2NetBackbone'" in result.stdout

    data = f'train_dataloader.dataset.data_root={tiny_demo_data}/'
    result = mmdet_tool('analysis_tools/browse_dataset.py', DEMO,
                        '--output-dir', tmp_path / 'browse', '--not-show',
                        '--show-interval', 0, '--cfg-options', data)
    assert result.returncode == 0, result.stderr[-3000:]
    drawn = sorted(p.name for p in (tmp_path / 'browse').iterdir())
    assert drawn == ['000000000001.png', '000000000002.png']


def test_eval_metric_gives_test_py_s_ap(mmdet_tool, tested_demo):
    """eval_metric.py re-evaluates the pickle with the config's evaluator:
    the AP that test.py wrote, to the last digit."""
    result = mmdet_tool('analysis_tools/eval_metric.py', DEMO,
                        tested_demo.pickle, '--cfg-options',
                        *_test_set(tested_demo))
    assert result.returncode == 0, result.stderr[-3000:]
    printed = ast.literal_eval(result.stdout.strip().splitlines()[-1])
    assert printed == tested_demo.metrics


def test_confusion_matrix(mmdet_tool, tested_demo, tmp_path):
    result = mmdet_tool('analysis_tools/confusion_matrix.py', DEMO,
                        tested_demo.pickle, tmp_path, '--cfg-options',
                        *_test_set(tested_demo))
    assert result.returncode == 0, result.stderr[-3000:]
    assert [p.name for p in tmp_path.iterdir()] == ['confusion_matrix.png']
    # mmdet draws 0.5 x 0.4 inches a class at 180 dpi: the 80 and background.
    assert Image.open(tmp_path / 'confusion_matrix.png').size == (81 * 90,
                                                                  81 * 72)


def test_analyze_results_draws_the_best_and_worst(mmdet_tool, tested_demo,
                                                  tmp_path):
    """analyze_results.py scores each image alone and draws the top-k and
    bottom-k. It starts 4 processes per image (mmdet's default), so it runs
    on the first 10 predictions and the same 10 images of the test set
    (``indices``)."""
    first = tmp_path / 'first10.pkl'
    mmengine.dump(mmengine.load(tested_demo.pickle)[:10], first)
    show = tmp_path / 'show'
    result = mmdet_tool('analysis_tools/analyze_results.py', DEMO, first, show,
                        '--topk', 2, '--cfg-options',
                        'test_dataloader.dataset.indices=10',
                        *_test_set(tested_demo))
    assert result.returncode == 0, result.stderr[-3000:]
    coco = json.loads(tested_demo.ann_file.read_text())
    first_ten = {
        Path(image['file_name']).stem
        for image in coco['images'][:10]
    }
    scores = {}
    for kind in ('good', 'bad'):
        # <image>_<its mAP>.png
        drawn = [p.stem.rsplit('_', 1) for p in (show / kind).iterdir()]
        assert len(drawn) == 2 and {image for image, _ in drawn} <= first_ten
        scores[kind] = [float(score) for _, score in drawn]
    assert min(scores['good']) >= max(scores['bad'])


def test_coco_error_analysis_on_the_results_json(mmdet_tool, tested_demo,
                                                 tmp_path):
    """coco_error_analysis.py on the results JSON that test.py wrote. It
    draws 4 figures per category of the annotation file (80: 324 figures,
    about 28 s), so it reads the annotations with the three categories that
    the demo data holds."""
    coco = json.loads(tested_demo.ann_file.read_text())
    held = {ann['category_id'] for ann in coco['annotations']}
    coco['categories'] = [c for c in coco['categories'] if c['id'] in held]
    ann = tmp_path / 'instances_val2017.json'
    ann.write_text(json.dumps(coco))
    result = mmdet_tool('analysis_tools/coco_error_analysis.py',
                        f'{tested_demo.prefix}.bbox.json', tmp_path / 'out',
                        '--ann', ann)
    assert result.returncode == 0, result.stderr[-3000:]
    names = [c['name'] for c in coco['categories']] + ['allclass']
    assert sorted(p.name for p in (tmp_path / 'out' / 'bbox').iterdir()) == \
        sorted(f'bbox-{name}-{area}.png' for name in names
               for area in ('allarea', 'small', 'medium', 'large'))


def test_images2coco_then_test_py_without_ground_truth(mmdet_tool, call_tool,
                                                       trained_demo, tmp_path):
    """mmdet's way to test on images without annotations: images2coco.py
    lists them (categories numbered from 0), test.py writes the detections
    with ``format_only``."""
    images = tmp_path / 'images'
    images.mkdir()
    for path in sorted((trained_demo.root / 'data' / 'val2017').iterdir())[:2]:
        shutil.copy(path, images)
    classes = tmp_path / 'classes.txt'
    classes.write_text('\n'.join(CocoDataset.METAINFO['classes']) + '\n')
    result = mmdet_tool('dataset_converters/images2coco.py', images, classes,
                        'unlabelled.json')
    assert result.returncode == 0, result.stderr[-3000:]
    ann = tmp_path / 'annotations' / 'unlabelled.json'  # beside images/
    listed = json.loads(ann.read_text())
    assert [image['id'] for image in listed['images']] == [0, 1]
    assert len(listed['categories']) == 80

    result = call_tool('test.py', DEMO, trained_demo.checkpoint, '--work-dir',
                       tmp_path / 'work', '--cfg-options',
                       f'test_dataloader.dataset.data_root={tmp_path}/',
                       'test_dataloader.dataset.data_prefix.img=images/',
                       f'test_dataloader.dataset.ann_file={ann}',
                       'test_dataloader.num_workers=0',
                       'test_dataloader.persistent_workers=False',
                       f'test_evaluator.ann_file={ann}',
                       'test_evaluator.format_only=True',
                       f'test_evaluator.outfile_prefix={tmp_path}/unlabelled')
    assert result.returncode == 0, result.stderr[-3000:]
    found = [
        d for d in json.loads((tmp_path / 'unlabelled.bbox.json').read_text())
        if d['score'] > 0.5
    ]
    assert {d['image_id'] for d in found} == {0, 1}
    # Categories numbered from 0 are the detector's labels.
    assert {d['category_id'] for d in found} <= DEMO_LABELS
    assert f'format_only; the detections were written to {tmp_path}/' \
        'unlabelled.bbox.json' in result.stdout
