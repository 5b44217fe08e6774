# mmdet::dino/dino-4scale_r50_8xb2-12e_coco.py with its ResNet-50 replaced by
# Res2Net res2net101_v1b_26w_4s, keeping the ResNet's num_stages, out_indices,
# style, frozen_stages, norm_cfg, norm_eval; written by
# tools/misc/res2net_config.py.
# Its CocoMetric evaluators are FasterCocoMetric: the same AP, faster
# (docs/speed.md).
_base_ = [
    'mmdet::dino/dino-4scale_r50_8xb2-12e_coco.py',
    './_base_/res2net_backbones.py'
]
model = dict(
    backbone=dict(
        _base_.res2net101_v1b_26w_4s,
        _delete_=True,
        num_stages=4,
        out_indices=(1, 2, 3),
        style='pytorch',
        frozen_stages=1,
        norm_cfg=dict(type='BN', requires_grad=False),
        norm_eval=True))
val_evaluator = dict(type='FasterCocoMetric')
test_evaluator = dict(type='FasterCocoMetric')
