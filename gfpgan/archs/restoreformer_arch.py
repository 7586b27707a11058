"""The reference's ``gfpgan.archs.restoreformer_arch``: RestoreFormer (``weight=`` blends, returns
``(image, None)``) and its VectorQuantizer.

A re-export of :mod:`gfpgan.compat.archs` (the reference's class over this project's
:mod:`gfpgan.archs.restoreformer_net`); this module defines nothing.
"""

from gfpgan.compat.archs import RestoreFormer, VectorQuantizer

__all__ = ["RestoreFormer", "VectorQuantizer"]
