# Copyright (c) Res2Net-MMDet contributors. All rights reserved.
"""projects/res2net/zoo/families.py: picking a family's config, the time
limit and a process that dies, the table. A family's check itself runs
through the tool (tests/tools/analysis_tools/test_check_mmdet_families.py).
"""
import pytest
from mmengine.config import Config

from projects.res2net.errors import UserError
from projects.res2net.zoo.families import (FamilyConfig, _inputs,
                                           check_in_process, family_configs,
                                           mmdet_configs_root, status, summary,
                                           table)

R50 = "model = dict(backbone=dict(type='ResNet', depth=50))\n"


def test_the_config_of_a_family_is_its_shortest_resnet50_one():
    root = mmdet_configs_root()
    found = family_configs(root, ['retinanet', 'dino', 'mask2former'])
    assert found == [
        FamilyConfig('dino', 'dino/dino-4scale_r50_8xb2-12e_coco.py'),
        FamilyConfig('mask2former',
                     'mask2former/mask2former_r50_8xb2-lsj-50e_coco.py'),
        FamilyConfig('retinanet', 'retinanet/retinanet_r50_fpn_1x_coco.py'),
    ]


def test_a_family_without_a_resnet50_config_is_left_out(tmp_path):
    """Left out of the table; named, it is one line. Its configs: one that
    does not read, one of another backbone, one without r50 in its name;
    ``_base_`` is no family."""
    for path, text in {
            '_base_/base_r50.py': R50,
            'good/good_r50_fpn.py': R50,
            'other/other_r50_fpn.py': 'model = dict(\n',
            'other/other_r50_swin.py':
            "model = dict(backbone=dict(type='SwinTransformer'))\n",
            'other/other_x101.py': R50,
    }.items():
        (tmp_path / path).parent.mkdir(exist_ok=True)
        (tmp_path / path).write_text(text)
    assert family_configs(
        str(tmp_path)) == [FamilyConfig('good', 'good/good_r50_fpn.py')]
    with pytest.raises(UserError) as err:
        family_configs(str(tmp_path), ['good', 'other'])
    assert str(err.value) == 'family other has no ResNet-50 config'


def test_inputs_fit_the_model():
    """Labels within the model's classes (0 for a model of one class, which
    mmdet's helper cannot draw), proposals for a detector without an RPN,
    semantic maps for a semantic head (HTC's is in its RoI head)."""
    root = mmdet_configs_root()

    def inputs(config):
        return _inputs(Config.fromfile(f'{root}/{config}'))['data_samples']

    cityscapes = inputs('cityscapes/mask-rcnn_r50_fpn_1x_cityscapes.py')
    assert all(s.gt_instances.labels.max() < 8 for s in cityscapes)
    assert all('proposals' in s
               for s in inputs('fast_rcnn/fast-rcnn_r50_fpn_1x_coco.py'))
    assert all('gt_sem_seg' in s for s in inputs('htc/htc_r50_fpn_1x_coco.py'))
    retina = inputs('retinanet/retinanet_r50_fpn_1x_coco.py')
    assert not any('proposals' in s or 'gt_sem_seg' in s for s in retina)
    # One class (faces): every box is of it, label 0.
    faces = inputs('wider_face/retinanet_r50_fpn_1x_widerface.py')
    assert all(
        len(s.gt_instances) > 0 and s.gt_instances.labels.eq(0).all()
        for s in faces)


def test_a_family_past_its_time_limit_is_a_row():
    row = check_in_process(
        mmdet_configs_root(),
        FamilyConfig('atss', 'atss/atss_r50_fpn_1x_coco.py'),
        variant='res2net50_v1b_26w_4s',
        timeout=0.5)
    assert (row['control'], row['res2net']) == ('timeout', 'timeout')
    assert row['control_reason'] == 'no result within 0.5 s'


def test_a_family_whose_process_dies_is_a_row(tmp_path):
    """A family that kills its process (as the kernel's OOM killer would) is
    a failed row saying so, not the end of the table; this one dies as its
    config is read."""
    (tmp_path / 'dies').mkdir()
    # No import statement: mmengine would read it as a lazy-import config.
    (tmp_path / 'dies' / 'dies_r50.py').write_text(
        "os = __import__('os')\n"
        "os.kill(os.getpid(), __import__('signal').SIGKILL)\n")
    row = check_in_process(
        str(tmp_path),
        FamilyConfig('dies', 'dies/dies_r50.py'),
        variant='res2net50_v1b_26w_4s',
        timeout=60)
    assert (row['control'], row['res2net']) == ('fail', 'fail')
    assert row['control_reason'] == row['res2net_reason'] == (
        'the process died (exit -9)')
    # Not waited for until its time limit.
    assert row['seconds'] < 30


def test_status_table_and_summary():
    rows = [
        dict(
            family='a',
            config='a/a_r50.py',
            control='pass',
            res2net='pass',
            control_reason='',
            res2net_reason='',
            seconds=3.2),
        dict(
            family='b',
            config='b/b_r50.py',
            control='pass',
            res2net='fail',
            control_reason='',
            res2net_reason='ValueError: x | y',
            seconds=1.0),
        dict(
            family='c',
            config='c/c_r50.py',
            control='fail',
            res2net='fail',
            control_reason='RuntimeError: cuda',
            res2net_reason='RuntimeError: cuda',
            seconds=2.0),
    ]
    assert [status(r)
            for r in rows] == ['ok', 'res2net fails', 'control fails']
    assert table(rows).splitlines()[2:] == [
        '| a | `a_r50.py` | pass | pass |  | 3 |',
        '| b | `b_r50.py` | pass | fail | ValueError: x \\| y | 1 |',
        '| c | `c_r50.py` | fail | fail | both: RuntimeError: cuda | 2 |',
    ]
    assert summary(rows) == ('3 families: 1 pass with Res2Net as with '
                             'ResNet; 1 fail with Res2Net only; 1 fail '
                             'already with ResNet-50')
