"""Training and evaluation data: degradations, datasets, storage backends, component boxes.

Importing this package registers ``FFHQDegradationDataset`` and ``PairedImageDataset`` in
``gfpgan.registry.DATASET_REGISTRY``. Training-only: the inference path never imports it.
"""

from gfpgan.data import degradations  # noqa: F401
from gfpgan.data.ffhq_degradation_dataset import FFHQDegradationDataset  # noqa: F401
from gfpgan.data.file_backends import FolderWriter, LmdbWriter  # noqa: F401
from gfpgan.data.paired_image_dataset import PairedImageDataset  # noqa: F401

__all__ = ["FFHQDegradationDataset", "PairedImageDataset", "LmdbWriter", "FolderWriter", "degradations"]
