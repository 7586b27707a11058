"""The reference's ``gfpgan.utils`` (TencentARC/GFPGAN 1.3.8): ``GFPGANer`` and ``load_file_from_url``.

A facade for programs written for the reference (roop and facefusion import ``GFPGANer`` from
here; AUTOMATIC1111's webui replaces ``load_file_from_url``, which ``GFPGANer`` honours at call
time). It defines nothing, and nothing in this package imports it; the project's own image and
file helpers live in :mod:`gfpgan.images`.
"""

from gfpgan.compat.gfpganer import GFPGANer
from gfpgan.compat.weights import load_file_from_url

__all__ = ["GFPGANer", "load_file_from_url"]
