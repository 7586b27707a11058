"""GFPGAN-Video: blind face restoration with a generative facial prior, for images and video.

Importing this package is cheap: it pulls in no torch, no training code and no BasicSR.
Import the submodules you need (``gfpgan.archs``, ``gfpgan.inference`` ...).
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
