# Faster R-CNN on Res2Net-v1b-50 26w×4s: the R2-101 config with
# the 50-layer backbone (its ImageNet weights: see
# configs/_base_/res2net_backbones.py).
_base_ = './faster_rcnn_r2_101_fpn_2x.py'
model = dict(backbone=_base_.res2net50_backbone)
