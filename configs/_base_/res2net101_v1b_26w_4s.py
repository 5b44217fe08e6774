# The backbone of every R2-101 detector config: Res2Net-v1b-101 26w×4s,
# initialised from its ImageNet weights ("v1d" in mmdet's names).
# Offline, point `checkpoint` at a local copy of the file, e.g.
#   --cfg-options model.backbone.init_cfg.checkpoint=/path/to/weights.pth
# (or set model.backbone.init_cfg=None to train from scratch on purpose).
custom_imports = dict(imports=['projects.res2net'], allow_failed_imports=False)

res2net101_backbone = dict(
    type='Res2NetBackbone',
    depth=101,
    scales=4,
    base_width=26,
    stem_type='deep',
    avg_down=True,
    # mmdet's rule, which the model-zoo detectors were trained with.
    first_block_pool='strided',
    init_cfg=dict(
        type='Pretrained', checkpoint='open-mmlab://res2net101_v1d_26w_4s'))
