# Copyright (c) Res2Net-MMDet contributors. All rights reserved.
"""The int8 and bf16 forms of the dense part: the int8 program's outputs,
its file and its record; what each CPU kind runs."""
import zipfile

import pytest
import torch
from mmdet.registry import MODELS
from torch import nn
from torch.nn.functional import cosine_similarity

from projects.res2net.errors import UserError
from projects.res2net.models.deploy import fold_batch_norms
from projects.res2net.models.precision import (DensePart, check_int8_program,
                                               cpu_has, file_sha256, load_int8,
                                               model_digest, precision_plan,
                                               quantize_int8, read_record,
                                               save_int8, to_precision)

# The first two stages of a slim Res2Net-50 (the demo's widths: 7 blocks,
# a stage block with its pooled split among them), at the export's smallest
# size: the whole network takes twice as long to export.
BACKBONE = dict(
    type='Res2NetBackbone',
    depth=50,
    base_channels=16,
    base_width=6,
    num_stages=2,
    strides=(1, 2),
    dilations=(1, 1),
    out_indices=(0, 1),
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
