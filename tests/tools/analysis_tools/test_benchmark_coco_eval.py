# Copyright (c) Res2Net-MMDet contributors. All rights reserved.
"""tools/analysis_tools/benchmark_coco_eval.py: COCO evaluators timed on a
generated set, their stats compared."""
import json

from projects.res2net.analysis import benchmark_coco_eval
from projects.res2net.evaluation.faster_coco_metric import (EVALUATORS,
                                                            STAT_NAMES)

TOOL = 'analysis_tools/benchmark_coco_eval.py'
SMALL = ('--images', 6, '--classes', 4, '--detections-per-image', 15)


def test_every_evaluator_on_a_small_set(call_tool, tmp_path):
    out = tmp_path / 'speed.json'
    result = call_tool(TOOL, *SMALL, '--repeats', 1, '--data-dir',
                       tmp_path / 'set', '--out', out)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr
    rows = [
        line.split(' | ')[:2] for line in result.stdout.splitlines()
        if line.startswith(('| bbox', '| segm'))
    ]
    assert [row for row in rows
            if 'loading' not in row[1]] == [[f'| {iou_type}', evaluator]
                                            for iou_type in ('bbox', 'segm')
                                            for evaluator in EVALUATORS]
    assert 'agree within 0.0001' in result.stdout
    found = json.loads(out.read_text())
    assert found['data']['images'] == 6
    assert found['data']['results'] == 6 * 15
    for by_evaluator in found['results'].values():
        assert set(by_evaluator) == set(EVALUATORS)
        for row in by_evaluator.values():
            assert set(row['stats']) == set(STAT_NAMES)
            assert row['max_abs_diff'] <= 1e-4
        assert by_evaluator['pycocotools']['speedup'] == 1
    # The set it kept is the one the seed makes.
    kept = json.loads((tmp_path / 'set' / 'gt.json').read_text())
    made = benchmark_coco_eval.generate_coco_like(
        images=6, classes=4, detections_per_image=15, seed=0)
    assert kept == json.loads(json.dumps(made.gt))
    other = benchmark_coco_eval.generate_coco_like(
        images=6, classes=4, detections_per_image=15, seed=1)
    assert other.segm != made.segm


def test_bad_input_is_one_line(call_tool, user_error, tmp_path, monkeypatch):
    out = tmp_path / 'speed.json'
    user_error(
        call_tool(TOOL, '--classes', 81, '--out', out), '--classes 81',
        'choose 1 to 80')
    monkeypatch.setattr(benchmark_coco_eval, 'COCOeval_faster', None)
    user_error(
        call_tool(TOOL, *SMALL, '--out', out), 'faster-coco-eval',
        'pip install faster-coco-eval==1.8.0')
    assert not out.exists()
