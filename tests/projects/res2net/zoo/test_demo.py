# Copyright (c) Res2Net-MMDet contributors. All rights reserved.
"""projects/res2net/zoo/demo.py: the demo size, its configs, its steps.

Whole demo runs are in tests/tools/misc/test_zoo_demo.py.
"""
import pytest
from mmengine.config import Config

from projects.res2net.errors import UserError
from projects.res2net.paths import TOOLS_DIR
from projects.res2net.zoo.demo import DemoSize, StepRunner, check_demo_config
from projects.res2net.zoo.table import (DEMO_PROPOSALS, DEMO_ROIS,
                                        demo_run_options)


def test_the_demo_size_is_zoo_demos():
    size = DemoSize(epochs=2, train_images=4, test_images=3, scale=96)
    config = 'configs/faster_rcnn_r2_101_fpn_2x.py'
    assert size.options('data/demo', config) == demo_run_options(
        'data/demo',
        model=Config.fromfile(config).model,
        scale=96,
        epochs=2,
        train_images=4,
        test_images=3)
    assert DemoSize() == DemoSize(1, 8, 8, 128)


@pytest.mark.parametrize('config, stages, score_thr', [
    ('faster_rcnn_r2_101_fpn_2x', [''], 'rcnn.score_thr'),
    ('cascade_mask_rcnn_r2_101_fpn_20e', ['.0', '.1', '.2'], 'rcnn.score_thr'),
    ('retinanet_r2_101_fpn_1x', [], 'score_thr'),
])
def test_a_two_stage_detector_trains_on_fewer_rois(config, stages, score_thr):
    """Every R-CNN stage samples DEMO_ROIS RoIs from DEMO_PROPOSALS; a
    one-stage detector has neither."""
    cfg = Config.fromfile(f'configs/{config}.py')
    options = demo_run_options('data/demo', model=cfg.model)
    rois = [o for o in options if 'sampler.num' in o or 'rpn_proposal' in o]
    assert rois == (
        [f'model.train_cfg.rpn_proposal.max_per_img='
         f'{DEMO_PROPOSALS}'] if stages else []) + [
             f'model.train_cfg.rcnn{stage}.sampler.num={DEMO_ROIS}'
             for stage in stages
         ]
    assert f'model.test_cfg.{score_thr}=0.0' in options
    # Each names a setting the config has (a typo would add a new one).
    for option in rois + [f'model.test_cfg.{score_thr}=0.0']:
        node = cfg
        for part in option.split('=')[0].split('.'):
            node = node[int(part)] if part.isdigit() else node[part]


def test_only_epoch_based_configs_fit():
    check_demo_config('configs/faster_rcnn_r2_101_fpn_2x.py')
    with pytest.raises(UserError) as err:
        check_demo_config('configs/demo/faster_rcnn_r2_50_fpn_demo.py')
    assert str(err.value) == (
        'configs/demo/faster_rcnn_r2_50_fpn_demo.py trains with '
        'IterBasedTrainLoop; zoo_demo.py runs epoch-based model-zoo configs '
        '(configs/*.py), for --epochs')


def test_a_failing_step_shows_its_output_and_command(capsys, tmp_path):
    # A tool that fails on its arguments: the step, not the tool, is the
    # subject.
    runner = StepRunner(total=3)
    with pytest.raises(UserError) as err:
        runner.run('misc/generate_demo_data.py', '--no-such-flag', '--out',
                   str(tmp_path))
    tool = TOOLS_DIR / 'misc/generate_demo_data.py'
    assert str(err.value) == (
        'step 1, tools/misc/generate_demo_data.py, failed (exit 2); its '
        f'output is above. The command: {tool} --no-such-flag --out '
        f'{tmp_path}')
    out, err = capsys.readouterr()
    assert out == \
        '[1/3] python tools/misc/generate_demo_data.py --no-such-flag\n'
    assert 'unrecognized arguments: --no-such-flag' in err
