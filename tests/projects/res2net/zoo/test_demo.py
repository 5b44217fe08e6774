# Copyright (c) Res2Net-MMDet contributors. All rights reserved.
"""projects/res2net/zoo/demo.py: the demo size, its configs, its steps.

Whole demo runs are in tests/tools/misc/test_zoo_demo.py.
"""
import pytest

from projects.res2net.errors import UserError
from projects.res2net.paths import TOOLS_DIR
from projects.res2net.zoo.demo import DemoSize, StepRunner, check_demo_config
from projects.res2net.zoo.table import demo_run_options


def test_the_demo_size_is_zoo_demos():
    size = DemoSize(epochs=2, train_images=4, test_images=3, scale=96)
    assert size.options('data/demo') == demo_run_options(
        'data/demo', scale=96, epochs=2, train_images=4, test_images=3)
    assert DemoSize() == DemoSize(1, 8, 8, 128)


def test_only_epoch_based_configs_fit():
    check_demo_config('configs/faster_rcnn_r2_101_fpn_2x.py')
    with pytest.raises(UserError) as err:
        check_demo_config('configs/demo/faster_rcnn_r2_50_fpn_demo.py')
    assert str(err.value) == (
        'configs/demo/faster_rcnn_r2_50_fpn_demo.py trains with '
        'IterBasedTrainLoop; zoo_demo.py runs epoch-based model-zoo configs '
        '(configs/*.py), for --epochs')


def test_a_failing_step_shows_its_output_and_command(capsys, tmp_path):
    # A tool that fails before it imports torch: the step, not the import,
    # is the subject.
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
