# Copyright (c) Res2Net-MMDet contributors. All rights reserved.
"""The Res2Net family: the block and the network, its published variants,
the converters' key maps, checkpoint reading and the deploy form.

Model code: nothing here imports the run (``engine``), the data
(``datasets``), the analysis or zoo code, nor ``tools/``.
"""
from .backbone import Bottle2neck, Res2NetBackbone
from .dla import DLA, Res2NetDLA

__all__ = ['Bottle2neck', 'DLA', 'Res2NetBackbone', 'Res2NetDLA']
