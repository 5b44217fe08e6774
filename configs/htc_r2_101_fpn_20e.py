# HTC (Hybrid Task Cascade, with the semantic head that reads the COCO-stuff
# maps in data/coco/stuffthingmaps/) on a Res2Net-v1b-101 26w×4s FPN backbone.
# 20 epochs, lr steps at 16 and 19; SGD lr 0.02 for 16 images (8 GPUs x 2).
_base_ = [
    'mmdet::htc/htc_r50_fpn_20e_coco.py',
    './_base_/res2net_backbones.py',
]
model = dict(backbone=_base_.res2net101_backbone)
# COCO AP by faster-coco-eval: CocoMetric's figures, faster (docs/speed.md);
# set here, as mmengine allows no key in two bases.
val_evaluator = dict(type='FasterCocoMetric')
test_evaluator = dict(type='FasterCocoMetric')
