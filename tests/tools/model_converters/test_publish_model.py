# Copyright (c) Res2Net-MMDet contributors. All rights reserved.
"""tools/model_converters/publish_model.py on a checkpoint train.py wrote."""
import hashlib
import json
import os
import shutil

import torch

TOOL = 'model_converters/publish_model.py'
FASTER = 'configs/faster_rcnn_r2_101_fpn_2x.py'
MASK = 'configs/mask_rcnn_r2_101_fpn_2x.py'


def _copy(zoo_demo, linked_copy, folder):
    """A copy of zoo_demo's Faster R-CNN work dir (publishing records), its
    metrics.json naming the copy's checkpoint as the tested one.

    Its files are hard links to zoo_demo's (a 490 MB checkpoint not written
    again): a test replaces a file before it changes it.
    """
    work_dir = linked_copy(zoo_demo.work_dirs[FASTER], folder / 'work')
    metrics = json.loads((work_dir / 'metrics.json').read_text())
    metrics['checkpoint'] = str(work_dir / 'epoch_1.pth')
    (work_dir / 'metrics.json').unlink()
    (work_dir / 'metrics.json').write_text(json.dumps(metrics))
    return work_dir


def test_a_slim_file_named_by_its_hash(call_tool, zoo_demo, linked_copy,
                                       ram_dir):
    trained = _copy(zoo_demo, linked_copy, ram_dir) / 'epoch_1.pth'
    out = ram_dir / 'out'
    result = call_tool(TOOL, trained, out / 'faster.pth')
    assert result.returncode == 0, result.stderr[-3000:]
    published, = out.iterdir()
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
    record = json.loads((trained.parent / 'published.json').read_text())
    assert record['epoch_1.pth']['file'] == str(published)
    assert record['epoch_1.pth']['sha256'] == digest


def test_the_table_links_the_published_file(call_tool, zoo_demo, linked_copy,
                                            ram_dir):
    work_dir = _copy(zoo_demo, linked_copy, ram_dir)
    trained = work_dir / 'epoch_1.pth'
    table = 'analysis_tools/benchmark_table.py'
    assert f'model: `{trained}`' in call_tool(table, work_dir).stdout
    result = call_tool(TOOL, trained, ram_dir / 'faster.pth')
    assert result.returncode == 0, result.stderr[-3000:]
    published, = ram_dir.glob('faster-*.pth')
    metafile = ram_dir / 'metafile.yml'
    shown = call_tool(table, work_dir, '--metafile', metafile)
    assert f'model: `{published}` \\| log: `{work_dir}/' in shown.stdout
    assert f'Weights: {published}' in metafile.read_text()
    # A checkpoint written again since (a resumed run) is not the published
    # one any more: the table links the checkpoint itself.
    trained.unlink()  # a link to zoo_demo's: a copy of its own
    shutil.copy(zoo_demo.work_dirs[FASTER] / 'epoch_1.pth', trained)
    os.utime(trained, ns=(0, 0))
    assert f'model: `{trained}`' in call_tool(table, work_dir).stdout


def test_weights_of_another_model_are_refused_and_nothing_stays(
        call_tool, zoo_demo, linked_copy, ram_dir, user_error):
    trained = _copy(zoo_demo, linked_copy, ram_dir) / 'epoch_1.pth'
    before = sorted(trained.parent.iterdir())
    out = ram_dir / 'out'
    result = call_tool(TOOL, trained, out / 'x.pth', '--config', MASK)
    user_error(result, 'not published, the file is removed: cannot load '
               'checkpoint', 'missing keys in source state_dict')
    assert not list(out.iterdir())
    assert sorted(trained.parent.iterdir()) == before
