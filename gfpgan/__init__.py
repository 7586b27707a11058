"""GFPGAN-Video: blind face restoration with a generative facial prior, for images and video.

Importing this package is cheap: it pulls in no torch, no training code and no BasicSR.
Import the submodules you need (``gfpgan.archs``, ``gfpgan.inference`` ...).

The reference package (TencentARC/GFPGAN) exposed ``GFPGANer``, its architectures and
``load_file_from_url`` at the top level; those names resolve here on first use (``gfpgan.GFPGANer``,
``from gfpgan import GFPGANer``), so programs written for it keep working.
"""

__version__ = "0.1.0"

# name -> module that defines it, imported only when the name is first used (the reference's API
# is gfpgan.compat; see gfpgan.compat.archs for its classes)
_LAZY = {
    "GFPGANer": "gfpgan.compat.gfpganer",
    "load_file_from_url": "gfpgan.utils",  # read there: programs replace it in gfpgan.utils
    **dict.fromkeys(["GFPGANv1Clean", "StyleGAN2GeneratorCSFT", "GFPGANv1", "StyleGAN2GeneratorSFT",
                     "FacialComponentDiscriminator", "GFPGANBilinear", "StyleGAN2GeneratorBilinear",
                     "StyleGAN2GeneratorClean", "RestoreFormer"], "gfpgan.compat.archs"),
    "ResNetArcFace": "gfpgan.archs.arcface_arch",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'gfpgan' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_LAZY))
