"""Training models, registered in ``MODEL_REGISTRY`` (``model_type`` in the options).

* ``base``: ``TrainingModel``, the setup every model shares (options, EMA, DDP, channels_last,
  optimizers, schedulers, the trainer's protocol besides the step) and the shared option schema.
* ``gfpgan_model``: ``GFPGANModel`` (the GFP-GAN recipe: networks, losses, one train step).
* ``temporal_model``: ``TemporalGFPGANModel`` (the temporal adapter's recipe on clips, issue 15).
* ``stylegan2_model``: ``StyleGAN2Model`` (the StyleGAN2 prior GFP-GAN's decoder loads, issue 27),
  with ``stylegan2_augment`` (DiffAugment / ADA for the discriminator's inputs).
* ``components``: their helpers (component crops, pyramid, optimizers, schedulers, weights).

Training-only: nothing on the inference path imports this package.
"""

from gfpgan.models import gfpgan_model, stylegan2_model, temporal_model  # noqa: F401  (registration)
from gfpgan.models.base import TrainingModel
from gfpgan.models.gfpgan_model import GFPGANModel
from gfpgan.models.stylegan2_model import StyleGAN2Model
from gfpgan.models.temporal_model import TemporalGFPGANModel

__all__ = ["GFPGANModel", "StyleGAN2Model", "TemporalGFPGANModel", "TrainingModel"]
