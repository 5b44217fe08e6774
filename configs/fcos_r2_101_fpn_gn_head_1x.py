# mmdet::fcos/fcos_r50-caffe_fpn_gn-head_1x_coco.py with its ResNet-50 replaced
# by Res2Net res2net101_v1b_26w_4s, keeping the ResNet's num_stages,
# out_indices, frozen_stages, norm_cfg, norm_eval; written by
# tools/misc/res2net_config.py.
# Also: the base is caffe-style (BGR input, std 1, stride in the 1x1 conv) for
# its detectron2 weights; the Res2Net weights were trained pytorch-style on RGB
# with ImageNet's mean and std, so style and data_preprocessor follow them.
# Its CocoMetric evaluators are FasterCocoMetric: the same AP, faster
# (docs/speed.md).
_base_ = [
    'mmdet::fcos/fcos_r50-caffe_fpn_gn-head_1x_coco.py',
    './_base_/res2net_backbones.py'
]
model = dict(
    data_preprocessor=dict(
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        bgr_to_rgb=True),
    backbone=dict(
        _base_.res2net101_v1b_26w_4s,
        _delete_=True,
        num_stages=4,
        out_indices=(0, 1, 2, 3),
        style='pytorch',
        frozen_stages=1,
        norm_cfg=dict(type='BN', requires_grad=False),
        norm_eval=True))
val_evaluator = dict(type='FasterCocoMetric')
test_evaluator = dict(type='FasterCocoMetric')
