# Copyright (c) Res2Net-MMDet contributors. All rights reserved.
"""tools/model_converters/publish_model.py on a checkpoint train.py wrote."""
import hashlib

import torch

TOOL = 'model_converters/publish_model.py'
FASTER = 'configs/faster_rcnn_r2_101_fpn_2x.py'
MASK = 'configs/mask_rcnn_r2_101_fpn_2x.py'


def test_a_slim_file_named_by_its_hash(call_tool, zoo_demo, tmp_path):
    trained = zoo_demo.work_dirs[FASTER] / 'epoch_1.pth'
    result = call_tool(TOOL, trained, tmp_path / 'faster.pth')
    assert result.returncode == 0, result.stderr[-3000:]
    published, = tmp_path.iterdir()
    digest = hashlib.sha256(published.read_bytes()).hexdigest()
    assert published.name == f'faster-{digest[:8]}.pth'
    assert f'sha256 {digest}' in result.stdout
    assert 'dropped: message_hub, optimizer, param_schedulers' in \
        result.stdout
    assert "loads strictly into the config's FasterRCNN" in result.stdout

    slim = torch.load(published, weights_only=True)
    full = torch.load(trained, weights_only=True)
    assert set(slim) == {'state_dict', 'meta'}
    assert slim['meta'] == full['meta']
    assert slim['state_dict'].keys() == full['state_dict'].keys()
    for key, value in full['state_dict'].items():
        assert torch.equal(slim['state_dict'][key], value), key
    assert published.stat().st_size < trained.stat().st_size


def test_weights_of_another_model_are_refused_and_nothing_stays(
        call_tool, zoo_demo, tmp_path, user_error):
    trained = zoo_demo.work_dirs[FASTER] / 'epoch_1.pth'
    result = call_tool(TOOL, trained, tmp_path / 'x.pth', '--config', MASK)
    user_error(result, 'not published, the file is removed: cannot load '
               'checkpoint', 'missing keys in source state_dict')
    assert not list(tmp_path.iterdir())
