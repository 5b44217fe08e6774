# Cascade R-CNN on Res2Net-v1b-50 26w×4s: the R2-101 config with
# the 50-layer backbone (its ImageNet weights: see
# configs/_base_/res2net_backbones.py).
_base_ = './cascade_rcnn_r2_101_fpn_20e.py'
model = dict(backbone=_base_.res2net50_backbone)
