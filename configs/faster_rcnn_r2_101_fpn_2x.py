# Faster R-CNN on a Res2Net-v1b-101 26w×4s FPN backbone.
# 2x schedule: 24 epochs, lr steps at 16 and 22;
# SGD lr 0.02 for 16 images (8 GPUs x 2).
_base_ = [
    'mmdet::faster_rcnn/faster-rcnn_r50_fpn_2x_coco.py',
    './_base_/res2net_backbones.py',
]
model = dict(backbone=_base_.res2net101_backbone)
# COCO AP by faster-coco-eval: CocoMetric's figures, faster (docs/speed.md);
# set here, as mmengine allows no key in two bases.
val_evaluator = dict(type='FasterCocoMetric')
test_evaluator = dict(type='FasterCocoMetric')
