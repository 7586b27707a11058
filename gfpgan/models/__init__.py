"""Training models, registered in ``MODEL_REGISTRY`` (``model_type`` in the options).

* ``gfpgan_model``: ``GFPGANModel`` (the GFP-GAN recipe: networks, losses, one train step).
* ``components``: its helpers (component crops, pyramid, optimizers, schedulers, weights).

Training-only: nothing on the inference path imports this package.
"""

from gfpgan.models import gfpgan_model  # noqa: F401  (registration)
from gfpgan.models.gfpgan_model import GFPGANModel

__all__ = ["GFPGANModel"]
