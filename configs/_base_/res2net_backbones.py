# The Res2Net backbones of the detector configs, defined once, and what every
# Res2Net config loads with them.
# Leaf configs pick one: model = dict(backbone=_base_.res2net101_backbone),
# or replace a base's ResNet whole:
# model = dict(backbone=dict(_base_.<name>, _delete_=True, ...)).
custom_imports = dict(imports=['projects.res2net'], allow_failed_imports=False)
# Training hooks (projects/res2net/engine/hooks.py): a resumed run continues
# exactly as the killed one would have; a NaN or infinite loss stops the run,
# naming the iteration and the loss term, before a checkpoint is written; a
# stop signal (Slurm's before the time limit, a preemption, Ctrl-C) ends the
# iteration, saves a checkpoint there and requeues the Slurm job.
custom_hooks = [
    dict(type='ExactResumeHook'),
    dict(type='FiniteLossHook'),
    dict(type='SignalCheckpointHook'),
]

# Res2Net-v1b-101 26w×4s from its ImageNet weights ("v1d" in mmdet's names)
# as published: every stage's first block pools its passed-through split
# (first_block_pool='always'), as the weights were trained. Named as in
# projects/res2net/models/variants.py, whose entry it is (a test checks):
# the configs that tools/misc/res2net_config.py writes start from it. Offline,
# point `checkpoint` at a local copy: --cfg-options
# model.backbone.init_cfg.checkpoint=/path/to/file.pth (or set
# model.backbone.init_cfg=None to train from scratch on purpose).
res2net101_v1b_26w_4s = dict(
    type='Res2NetBackbone',
    depth=101,
    scales=4,
    base_width=26,
    stem_type='deep',
    avg_down=True,
    first_block_pool='always',
    init_cfg=dict(
        type='Pretrained', checkpoint='open-mmlab://res2net101_v1d_26w_4s'))

# The same network as in the MMDetection model zoo: mmdet's rule, which the
# model-zoo detectors were trained with, pools in strided first blocks only.
res2net101_backbone = dict(res2net101_v1b_26w_4s, first_block_pool='strided')

# Res2Net-v1b-50 26w×4s. mmengine names no download for its ImageNet
# weights: convert the official res2net50_v1b_26w_4s-3cf99910.pth with
#   python tools/model_converters/res2net_to_backbone.py \
#       res2net50_v1b_26w_4s-3cf99910.pth \
#       checkpoints/res2net50_v1b_26w_4s.pth --variant res2net50_v1b_26w_4s
res2net50_backbone = dict(
    res2net101_backbone,
    depth=50,
    init_cfg=dict(
        type='Pretrained', checkpoint='checkpoints/res2net50_v1b_26w_4s.pth'))

# Deformable split convs in stages 2-4 (c3-c5), as the Res2Net fork of
# mmdetection published for Cascade Mask R-CNN and HTC.
res2net_dcn_c3_c5 = dict(
    dcn=dict(type='DCN', deform_groups=1, fallback_on_stride=False),
    stage_with_dcn=(False, True, True, True))

# Res2Net-DLA-60 (the official dla.py): the light Res2Net backbone, 21 M
# parameters and 4.1 GMACs at 224² (Res2Net-v1b-101: 45 M, 8.3 G). Its
# levels 2-5 give strides 4-32 with 128, 256, 512, 1024 channels (an FPN's
# `in_channels`, dla_fpn_in_channels below). Not a ResNet: a leaf config
# replaces the base's backbone whole (`_delete_=True`). frozen_stages=2 freezes
# through level2 (stride 4), as mmdet's frozen_stages=1 freezes a ResNet's
# stem and first stage. Its ImageNet weights: convert the official
# res2net_dla60_4s-d88db7f9.pth (or timm's dla60_res2net) with
#   python tools/model_converters/res2net_to_backbone.py \
#       res2net_dla60_4s-d88db7f9.pth checkpoints/res2net_dla60.pth \
#       --variant res2net_dla60
res2net_dla60_backbone = dict(
    type='Res2NetDLA',
    depth=60,
    scales=4,
    base_width=28,
    out_indices=(2, 3, 4, 5),
    frozen_stages=2,
    norm_cfg=dict(type='BN', requires_grad=True),
    norm_eval=True,
    init_cfg=dict(
        type='Pretrained', checkpoint='checkpoints/res2net_dla60.pth'))

# Res2NeXt-DLA-60: 8 groups of 4 channels per split (17 M parameters, 3.5
# GMACs); convert res2next_dla60_4s-d327927b.pth (or timm's dla60_res2next)
# with --variant res2next_dla60 to checkpoints/res2next_dla60.pth.
res2next_dla60_backbone = dict(
    res2net_dla60_backbone,
    base_width=4,
    groups=8,
    init_cfg=dict(
        type='Pretrained', checkpoint='checkpoints/res2next_dla60.pth'))

dla_fpn_in_channels = [128, 256, 512, 1024]
