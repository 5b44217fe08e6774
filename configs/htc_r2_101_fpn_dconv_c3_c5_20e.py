# HTC on Res2Net-v1b-101 26w×4s with deformable split convs in
# stages 2-4 (c3-c5).
_base_ = './htc_r2_101_fpn_20e.py'
model = dict(backbone=_base_.res2net_dcn_c3_c5)
