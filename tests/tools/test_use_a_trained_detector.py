# Copyright (c) Res2Net-MMDet contributors. All rights reserved.
"""docs/inference.md, "Your own checkpoint": mmdet's DetInferencer,
unchanged, on our config and the trained demo checkpoint (mmdet's tools:
test_mmdet_tools.py)."""
import json
import shutil

DEMO = 'configs/demo/faster_rcnn_r2_50_fpn_demo.py'


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
