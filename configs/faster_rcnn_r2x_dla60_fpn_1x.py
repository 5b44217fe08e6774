# Faster R-CNN on Res2NeXt-DLA-60 ("r2x": Res2NeXt, 8 groups per split):
# the Res2Net-DLA-60 config with the other published DLA backbone (its
# ImageNet weights: see configs/_base_/res2net_backbones.py).
_base_ = './faster_rcnn_r2_dla60_fpn_1x.py'
model = dict(backbone=_base_.res2next_dla60_backbone)
