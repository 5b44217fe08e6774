# Copyright (c) Res2Net-MMDet contributors. All rights reserved.
"""The int8 and bf16 forms of the dense part: the int8 program's outputs,
its file and its record; what each CPU kind runs."""
import zipfile

import pytest
import torch
from mmdet.registry import MODELS
from mmengine.config import ConfigDict
from torch import nn
from torch.nn.functional import cosine_similarity

from projects.res2net.errors import UserError
from projects.res2net.models.deploy import fold_batch_norms
from projects.res2net.models.precision import (DensePart, HeadOutputs,
                                               check_int8_program, cpu_has,
                                               dense_part, file_sha256,
                                               load_int8, model_digest,
                                               precision_plan, quantize_int8,
                                               read_record, save_int8,
                                               to_precision)

# The first two stages of a slim Res2Net-50 (the demo's widths: 7 blocks,
# a stage block with its pooled split among them), the second with mmcv's
# deformable split convs as the dconv configs set them, at the export's
# smallest size: the whole network takes twice as long to export.
BACKBONE = dict(
    type='Res2NetBackbone',
    depth=50,
    base_channels=16,
    base_width=6,
    num_stages=2,
    strides=(1, 2),
    dilations=(1, 1),
    out_indices=(0, 1),
    dcn=dict(type='DCN', deform_groups=1, fallback_on_stride=False),
    stage_with_dcn=(False, True),
    init_cfg=None)
SIZE = 96


@pytest.fixture(scope='module')
def int8(tmp_path_factory):
    """The backbone, its int8 program (2 calibration images), a test image,
    the program saved with a record, and the checkpoint it names."""
    torch.manual_seed(0)
    dense = DensePart(MODELS.build(BACKBONE), None).eval()
    fold_batch_norms(dense)
    images = [torch.randn(1, 3, SIZE, SIZE) for _ in range(3)]
    program = quantize_int8(dense, images[:2])
    root = tmp_path_factory.mktemp('int8')
    checkpoint = root / 'weights.pth'
    torch.save(dense.state_dict(), checkpoint)
    path = root / 'weights.int8.pt2'
    record = dict(
        config='backbone.py',
        checkpoint=str(checkpoint),
        checkpoint_sha256=file_sha256(str(checkpoint)),
        model_digest=model_digest(BACKBONE),
        calib_images=2,
        calib_data='random')
    save_int8(program, str(path), record)
    return dense, program, images[2], path, checkpoint, record


def test_the_int8_program_is_close_to_fp32_at_every_level(int8):
    dense, program, image, *_ = int8
    with torch.no_grad():
        want = dense(image)
        got = program.module()(image)
    assert len(got) == len(want) == 2
    for level, (g, w) in enumerate(zip(got, want)):
        assert g.shape == w.shape
        assert cosine_similarity(g.flatten(), w.flatten(), 0) >= 0.99, level
    # The deformable convs run mmcv's kernel in fp32, their offset convs
    # unquantized.
    deform = [
        node for node in program.graph.nodes
        if node.target == torch.ops.res2net.deform_conv2d.default
    ]
    assert len(deform) == sum(
        type(m).__name__ == 'DeformConv2dPack' for m in dense.modules()) > 0
    for node in deform:
        x, offset, weight = node.args[:3]
        assert x.meta['val'].dtype == torch.float32
        assert offset.target == torch.ops.aten.conv2d.default
        assert offset.args[1].op == 'placeholder'  # an fp32 weight
    # Another size, with no new export (height and width are dynamic).
    wide = torch.randn(1, 3, SIZE, 2 * SIZE)
    with torch.no_grad():
        assert program.module()(wide)[0].shape == dense(wide)[0].shape


def test_the_saved_program_gives_the_same_outputs_and_its_record(int8):
    _, program, image, path, checkpoint, record = int8
    assert read_record(str(path)) == record
    assert check_int8_program(str(path), BACKBONE, str(checkpoint)) == record
    with torch.no_grad():
        want = program.module()(image)
        got = load_int8(str(path)).module()(image)
    for g, w in zip(got, want):
        assert torch.equal(g, w)


def test_a_program_of_other_weights_or_model_is_refused(int8, tmp_path):
    *_, path, checkpoint, _ = int8
    other = tmp_path / 'other.pth'
    other.write_bytes(checkpoint.read_bytes() + b'\0')
    with pytest.raises(UserError) as err:
        check_int8_program(str(path), BACKBONE, str(other))
    assert str(err.value) == (
        f'{path} was made from {checkpoint} (sha256 '
        f'{file_sha256(str(checkpoint))[:12]}), not from {other} (sha256 '
        f'{file_sha256(str(other))[:12]}); quantize this checkpoint with '
        'tools/deployment/quantize.py')
    with pytest.raises(
            UserError,
            match='was made for the model of '
            'backbone.py, not this config'):
        check_int8_program(
            str(path), dict(BACKBONE, scales=8), str(checkpoint))


def test_a_missing_or_foreign_file_is_refused(tmp_path):
    with pytest.raises(UserError, match='int8 program not found'):
        read_record(str(tmp_path / 'none.pt2'))
    archive_without_record = tmp_path / 'archive.pt2'
    with zipfile.ZipFile(archive_without_record, 'w') as archive:
        archive.writestr('archive/data.pkl', b'')
    text = tmp_path / 'text.pt2'
    text.write_text('not a zip file')
    for path in (archive_without_record, text):
        with pytest.raises(UserError, match='is not an int8 program'):
            read_record(str(path))


def test_what_each_cpu_kind_runs():
    """bf16 needs its instructions (emulated it is many times slower) and
    runs as fp32 without them unless forced; int8 runs everywhere, with a
    note where VNNI is missing; neither on a GPU."""
    assert precision_plan('fp32', device='cpu', force=False) == ('fp32', None)
    if cpu_has('bf16'):
        assert precision_plan('bf16', device='cpu', force=False) == \
            ('bf16', None)
    else:
        precision, note = precision_plan('bf16', device='cpu', force=False)
        assert precision == 'fp32'
        assert note.startswith('this CPU has no AVX512_BF16 or AMX')
        assert precision_plan('bf16', device='cpu', force=True)[0] == 'bf16'
    precision, note = precision_plan('int8', device='cpu', force=False)
    assert precision == 'int8'
    assert (note is None) == cpu_has('int8')
    with pytest.raises(
            UserError, match='--precision int8 is a deploy form '
            'for x86 CPUs'):
        precision_plan('int8', device='cuda', force=False)


def test_to_precision_takes_a_program_for_int8_only(int8):
    _, program, *_ = int8
    for precision, given in (('int8', None), ('bf16', program), ('fp32',
                                                                 program)):
        with pytest.raises(
                UserError,
                match='an int8 program goes with '
                'precision int8, and only with it'):
            to_precision(nn.Identity(), precision, program=given)
    with pytest.raises(UserError, match="precision 'fp16': use one of"):
        to_precision(nn.Identity(), 'fp16')


class _SharedModules(nn.Module):
    """One ReLU module called after two convs, as mmdet's ResNet bottleneck
    calls its ``relu``, and one conv run on two levels, as a one-stage
    head runs its convs on every level."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.relu = nn.ReLU()
        self.head = nn.Conv2d(8, 4, 3, padding=1)

    def forward(self, x):
        feat = self.relu(self.conv2(self.relu(self.conv1(x))))
        levels = (feat, nn.functional.max_pool2d(feat, 2))
        return tuple(self.head(level) for level in levels)


def test_a_module_called_twice_quantizes():
    """The quantizer would take the calls of one ReLU, or of one conv on
    two levels, for one pattern with several outputs and refuse it; each
    call is its own."""
    torch.manual_seed(0)
    model = _SharedModules().eval()
    image = torch.randn(1, 3, SIZE, SIZE)
    program = quantize_int8(model, [image])
    with torch.no_grad():
        got, want = program.module()(image), model(image)
    for g, w in zip(got, want):
        assert cosine_similarity(g.flatten(), w.flatten(), 0) >= 0.99
    # Every conv call reads an int8 activation and int8 weights: conv1,
    # conv2 and the head on each level.
    convs = [
        node for node in program.graph.nodes
        if node.target == torch.ops.aten.conv2d.default
    ]
    assert len(convs) == 4
    for conv in convs:
        activation, weight = conv.args[:2]
        assert activation.target == \
            torch.ops.quantized_decomposed.dequantize_per_tensor.default
        assert weight.target == \
            torch.ops.quantized_decomposed.dequantize_per_channel.default


# A one-stage detector small enough to build in a moment.
RETINANET = dict(
    type='RetinaNet',
    data_preprocessor=dict(type='DetDataPreprocessor', pad_size_divisor=32),
    backbone=dict(
        type='ResNet', depth=18, base_channels=8, out_indices=(1, 2, 3)),
    neck=dict(
        type='FPN',
        in_channels=[16, 32, 64],
        out_channels=8,
        start_level=0,
        add_extra_convs='on_input',
        num_outs=5),
    bbox_head=dict(
        type='RetinaHead',
        num_classes=3,
        in_channels=8,
        stacked_convs=1,
        feat_channels=8,
        anchor_generator=dict(
            type='AnchorGenerator',
            octave_base_scale=4,
            scales_per_octave=3,
            ratios=[0.5, 1.0, 2.0],
            strides=[8, 16, 32, 64, 128]),
        bbox_coder=dict(
            type='DeltaXYWHBBoxCoder',
            target_means=[.0, .0, .0, .0],
            target_stds=[1.0, 1.0, 1.0, 1.0]),
        loss_cls=dict(type='FocalLoss', use_sigmoid=True, loss_weight=1.0),
        loss_bbox=dict(type='L1Loss', loss_weight=1.0)),
    test_cfg=dict(
        nms_pre=100,
        min_bbox_size=0,
        score_thr=0.0,
        nms=dict(type='nms', iou_threshold=0.5),
        max_per_img=20))


def test_a_one_stage_head_runs_in_the_dense_part():
    """RetinaNet's head convs join the backbone and neck; its decoding
    (boxes, NMS) gets their outputs and detects what the head would."""
    from mmdet.testing import demo_mm_inputs
    from mmdet.utils import register_all_modules
    register_all_modules()
    torch.manual_seed(0)
    detector = MODELS.build(ConfigDict(RETINANET)).eval()
    packed = demo_mm_inputs(1, [[3, SIZE, SIZE]], num_classes=3)
    data = detector.data_preprocessor(packed, False)
    dense = dense_part(detector)
    assert dense.head is detector.bbox_head
    with torch.no_grad():
        outs = dense(data['inputs'])
        want = detector.predict(data['inputs'], data['data_samples'])
    assert [len(levels) for levels in outs] == [5, 5]  # scores, boxes
    head = HeadOutputs(detector.bbox_head)
    with torch.no_grad():
        got = head.predict(outs, data['data_samples'], rescale=True)
    assert len(want[0].pred_instances) > 0
    assert torch.equal(got[0].bboxes, want[0].pred_instances.bboxes)
    assert torch.equal(got[0].scores, want[0].pred_instances.scores)
    # bf16 puts it in place (compiled at its first call, not here).
    assert to_precision(detector, 'bf16') == \
        'backbone, neck and head convs in bf16 (autocast, compiled)'
    assert isinstance(detector.bbox_head, HeadOutputs)
    assert isinstance(detector.neck, nn.Identity)


def test_two_stage_heads_stay_outside(repo):
    from mmengine.config import Config
    cfg = Config.fromfile(
        str(repo / 'configs' / 'demo' / 'faster_rcnn_r2_50_fpn_demo.py'))
    detector = MODELS.build(cfg.model)
    dense = dense_part(detector)
    assert dense.head is None
    assert dense.backbone is detector.backbone
    assert dense.neck is detector.neck


def test_the_model_digest_is_the_networks():
    """Post-processing settings, and the copies of them that mmdet puts in
    the heads' configs when it builds a detector, keep a program valid;
    the network's own settings do not."""
    model = dict(
        backbone=dict(BACKBONE),
        roi_head=dict(type='StandardRoIHead'),
        test_cfg=dict(rcnn=dict(score_thr=0.05)))
    digest = model_digest(model)
    built = dict(
        model,
        roi_head=dict(type='StandardRoIHead', test_cfg=dict(score_thr=0.05)),
        test_cfg=dict(rcnn=dict(score_thr=0.3)))
    assert model_digest(built) == digest
    deeper = dict(model, backbone=dict(BACKBONE, depth=101))
    assert model_digest(deeper) != digest
