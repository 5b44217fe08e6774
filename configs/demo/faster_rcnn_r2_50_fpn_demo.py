# The CPU demo (`make demo`): Faster R-CNN on a slim Res2Net-50, trained from
# scratch on the generated demo data (tools/misc/generate_demo_data.py): 400
# iterations, 0.76 bbox AP (timings: docs/get_started.md#timings).
# It is the R2-101 config scaled down, so it exercises the same backbone,
# neck, heads, data pipeline and COCO metric.
_base_ = '../faster_rcnn_r2_101_fpn_2x.py'

data_root = 'data/demo/'
image_size = (128, 128)
max_iters = 400
# FPN and heads at half the channels: on a CPU they, not the backbone, take
# most of a step (RoIAlign's backward above all).
channels = 128

model = dict(
    backbone=dict(
        depth=50,
        base_channels=16,
        base_width=6,
        # Nothing is frozen and BN learns: there are no pretrained weights.
        frozen_stages=-1,
        norm_eval=False,
        # Train from scratch on purpose (the ImageNet weights are offline).
        init_cfg=None),
    neck=dict(in_channels=[64, 128, 256, 512], out_channels=channels),
    rpn_head=dict(
        in_channels=channels,
        feat_channels=channels,
        # Objects are 10-64 px: anchors of 16-256 px over the FPN levels.
        anchor_generator=dict(scales=[4])),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=channels),
        # Its two fully connected layers keep mmdet's 1024 channels: with
        # 512, training from scratch at lr 0.04 diverged in one run of four.
        bbox_head=dict(in_channels=channels)),
    # 1-4 objects per image need few proposals and RoIs: 300 proposals
    # instead of 1000-2000 (NMS), 64 RoIs instead of 512 (RoIAlign).
    train_cfg=dict(
        rpn_proposal=dict(nms_pre=500, max_per_img=300),
        rcnn=dict(sampler=dict(num=64))),
    test_cfg=dict(rpn=dict(nms_pre=500, max_per_img=300)))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', scale=image_size, keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=image_size, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(
        type='PackDetInputs',
        meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                   'scale_factor'))
]
train_dataloader = dict(
    batch_size=8,
    num_workers=1,
    # Iteration-based: one endless pass instead of restarting the loader.
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(data_root=data_root, pipeline=train_pipeline))
val_dataloader = dict(
    num_workers=1, dataset=dict(data_root=data_root, pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val2017.json')
test_evaluator = val_evaluator

train_cfg = dict(
    _delete_=True,
    type='IterBasedTrainLoop',
    max_iters=max_iters,
    val_interval=max_iters)
param_scheduler = [
    dict(
        type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=100),
    dict(
        type='MultiStepLR',
        by_epoch=False,
        begin=0,
        end=max_iters,
        milestones=[320],  # the last 20% at lr / 10
        gamma=0.1)
]
# Training from scratch: clip the gradients so the early steps stay finite.
optim_wrapper = dict(
    optimizer=dict(lr=0.04), clip_grad=dict(max_norm=35, norm_type=2))
default_hooks = dict(
    logger=dict(interval=20),
    checkpoint=dict(by_epoch=False, interval=max_iters))
log_processor = dict(by_epoch=False, window_size=20)
randomness = dict(seed=0)
