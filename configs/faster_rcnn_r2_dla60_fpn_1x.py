# Faster R-CNN on a Res2Net-DLA-60 FPN backbone: the light Res2Net detector.
# 1x schedule: 12 epochs, lr steps at 8 and 11; SGD lr 0.02 for 16 images
# (8 GPUs x 2). ImageNet weights: see configs/_base_/res2net_backbones.py.
_base_ = [
    'mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py',
    './_base_/res2net_backbones.py',
]
model = dict(
    backbone=dict(_base_.res2net_dla60_backbone, _delete_=True),
    neck=dict(in_channels=_base_.dla_fpn_in_channels))
# COCO AP by faster-coco-eval: CocoMetric's figures, faster (docs/speed.md);
# set here, as mmengine allows no key in two bases.
val_evaluator = dict(type='FasterCocoMetric')
test_evaluator = dict(type='FasterCocoMetric')
