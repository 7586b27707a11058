"""Training and evaluation data: degradations, datasets, storage backends, component boxes.

Importing this package registers ``FFHQDegradationDataset``, ``PairedImageDataset`` and the video
clip datasets ``FFHQClipDataset`` and ``FaceTrackClipDataset`` in
``gfpgan.registry.DATASET_REGISTRY``. Training-only: the inference path never imports it.
"""

from gfpgan.data import degradations
from gfpgan.data.clip_dataset import FaceTrackClipDataset, FFHQClipDataset
from gfpgan.data.ffhq_degradation_dataset import FFHQDegradationDataset
from gfpgan.data.file_backends import FolderWriter, LmdbWriter
from gfpgan.data.paired_image_dataset import PairedImageDataset

__all__ = ["FaceTrackClipDataset", "FFHQClipDataset", "FFHQDegradationDataset", "FolderWriter", "LmdbWriter",
           "PairedImageDataset", "degradations"]
