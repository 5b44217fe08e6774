# Copyright (c) Res2Net-MMDet contributors. All rights reserved.
"""docs/useful_tools.md, "mmdet's own tools": mmdet's tools, unchanged, as
scripts of the installed mmdet, on our configs and on what our tools wrote
for the trained demo detector (one ``tools/test.py --out`` run shared)."""
import ast
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

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


def _mmdet_tool(repo: Path, tool: str, *args) -> subprocess.CompletedProcess:
    """Run ``mmdet/.mim/tools/<tool>`` as a user would, from the repo root
    (matplotlib without a display)."""
    return subprocess.run(
        [sys.executable,
         str(MMDET_TOOLS / tool), *map(str, args)],
        cwd=repo,
        env=dict(os.environ, MPLBACKEND='Agg'),
        capture_output=True,
        text=True,
        timeout=600)


class DemoOutputs(NamedTuple):
    data: Path  # the demo data that the detector was tested on
    pickle: Path  # test.py --out: the predictions, in mmdet's format
    results_json: Path  # CocoMetric's COCO results file (outfile_prefix)
    metrics: dict  # test.py's metrics.json


@pytest.fixture(scope='module')
def demo_outputs(call_tool, trained_demo, quick,
                 tmp_path_factory) -> DemoOutputs:
    """tools/test.py on the trained demo, once for the module: the pickle of
    ``--out`` and the COCO results JSON of ``outfile_prefix``, on all 100
    validation images (CocoMetric scores every image of its annotation
    file, so a subset would count the others as missed)."""
    data = trained_demo.root / 'data'
    work_dir = tmp_path_factory.mktemp('mmdet_tools')
    pickle = work_dir / 'results.pkl'
    result = call_tool(
        'test.py', DEMO, trained_demo.checkpoint, '--work-dir', work_dir,
        '--out', pickle,
        *quick(data, **{'test_evaluator.outfile_prefix': work_dir / 'coco'}))
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((work_dir / 'metrics.json').read_text())['metrics']
    assert metrics['coco/bbox_mAP'] > 0.1  # a meaningful comparison
    return DemoOutputs(data, pickle, work_dir / 'coco.bbox.json', metrics)


def _val_annotations(outputs: DemoOutputs) -> Path:
    return outputs.data / 'annotations' / 'instances_val2017.json'


def _test_set(outputs: DemoOutputs) -> list:
    """mmdet's tools do not move the dataset paths with ``data_root=``:
    the test set's own, and the evaluator's annotation file."""
    return [
        f'test_dataloader.dataset.data_root={outputs.data}/',
        f'val_evaluator.ann_file={_val_annotations(outputs)}'
    ]


def test_print_config_and_browse_dataset(repo, tiny_demo_data, tmp_path):
    result = _mmdet_tool(repo, 'misc/print_config.py', DEMO)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "type='Res2NetBackbone'" in result.stdout

    data = f'train_dataloader.dataset.data_root={tiny_demo_data}/'
    result = _mmdet_tool(repo, 'analysis_tools/browse_dataset.py', DEMO,
                         '--output-dir', tmp_path / 'browse', '--not-show',
                         '--show-interval', 0, '--cfg-options', data)
    assert result.returncode == 0, result.stderr[-3000:]
    drawn = sorted(p.name for p in (tmp_path / 'browse').iterdir())
    assert drawn == ['000000000001.png', '000000000002.png']


def test_eval_metric_gives_test_py_s_ap(repo, demo_outputs):
    """eval_metric.py re-evaluates the pickle with the config's evaluator:
    the AP that test.py wrote, to the last digit."""
    result = _mmdet_tool(repo, 'analysis_tools/eval_metric.py', DEMO,
                         demo_outputs.pickle, '--cfg-options',
                         *_test_set(demo_outputs))
    assert result.returncode == 0, result.stderr[-3000:]
    printed = ast.literal_eval(result.stdout.strip().splitlines()[-1])
    assert printed == demo_outputs.metrics


def test_confusion_matrix(repo, demo_outputs, tmp_path):
    result = _mmdet_tool(repo, 'analysis_tools/confusion_matrix.py', DEMO,
                         demo_outputs.pickle, tmp_path, '--cfg-options',
                         *_test_set(demo_outputs))
    assert result.returncode == 0, result.stderr[-3000:]
    assert [p.name for p in tmp_path.iterdir()] == ['confusion_matrix.png']
    # mmdet draws 0.5 x 0.4 inches a class at 180 dpi: the 80 and background.
    assert Image.open(tmp_path / 'confusion_matrix.png').size == (81 * 90,
                                                                  81 * 72)


def test_analyze_results_draws_the_best_and_worst(repo, demo_outputs,
                                                  tmp_path):
    """analyze_results.py scores each image alone and draws the top-k and
    bottom-k. It starts 4 processes per image (mmdet's default), so it runs
    on the first 10 predictions and the same 10 images of the test set
    (``indices``)."""
    first = tmp_path / 'first10.pkl'
    mmengine.dump(mmengine.load(demo_outputs.pickle)[:10], first)
    show = tmp_path / 'show'
    result = _mmdet_tool(repo, 'analysis_tools/analyze_results.py', DEMO,
                         first, show, '--topk', 2, '--cfg-options',
                         'test_dataloader.dataset.indices=10',
                         *_test_set(demo_outputs))
    assert result.returncode == 0, result.stderr[-3000:]
    coco = json.loads(_val_annotations(demo_outputs).read_text())
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


def test_coco_error_analysis_on_the_results_json(repo, demo_outputs, tmp_path):
    """coco_error_analysis.py on the results JSON that test.py wrote. It
    draws 4 figures per category of the annotation file (80: 324 figures,
    about 28 s), so it reads the annotations with the three categories that
    the demo data holds."""
    coco = json.loads(_val_annotations(demo_outputs).read_text())
    held = {ann['category_id'] for ann in coco['annotations']}
    coco['categories'] = [c for c in coco['categories'] if c['id'] in held]
    ann = tmp_path / 'instances_val2017.json'
    ann.write_text(json.dumps(coco))
    result = _mmdet_tool(repo, 'analysis_tools/coco_error_analysis.py',
                         demo_outputs.results_json, tmp_path / 'out', '--ann',
                         ann)
    assert result.returncode == 0, result.stderr[-3000:]
    names = [c['name'] for c in coco['categories']] + ['allclass']
    assert sorted(p.name for p in (tmp_path / 'out' / 'bbox').iterdir()) == \
        sorted(f'bbox-{name}-{area}.png' for name in names
               for area in ('allarea', 'small', 'medium', 'large'))


def test_images2coco_then_test_py_without_ground_truth(repo, call_tool,
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
    result = _mmdet_tool(repo, 'dataset_converters/images2coco.py', images,
                         classes, 'unlabelled.json')
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
