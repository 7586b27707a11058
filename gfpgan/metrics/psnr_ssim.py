"""PSNR and SSIM on 8-bit images, with the conventions of the face-restoration literature.

The conventions (those of BasicSR, used by the GFP-GAN paper's tables) are explicit arguments:
images are RGB uint8 (or floats on the 0-255 scale), ``crop_border`` pixels are removed on each
side first, and ``test_y_channel`` measures the BT.601 luma (range 16-235) instead of RGB. SSIM
is Wang et al. 2004 with an 11x11 Gaussian window (sigma 1.5), K1=0.01, K2=0.03, L=255, computed
on the valid region only and averaged over channels.
"""

import cv2
import numpy as np

from gfpgan.metrics.common import crop, rgb_to_y
from gfpgan.registry import METRIC_REGISTRY


def _prepare(img: np.ndarray, img2: np.ndarray, crop_border: int, test_y_channel: bool):
    img, img2 = np.asarray(img), np.asarray(img2)
    if img.shape != img2.shape:
        raise ValueError(f"image shapes differ: {img.shape} vs {img2.shape}")
    img, img2 = img.astype(np.float64), img2.astype(np.float64)
    if test_y_channel and img.ndim == 3 and img.shape[2] == 3:
        img, img2 = rgb_to_y(img), rgb_to_y(img2)
    if img.ndim == 2:
        img, img2 = img[..., None], img2[..., None]
    return crop(img, crop_border), crop(img2, crop_border)


@METRIC_REGISTRY.register()
def calculate_psnr(img: np.ndarray, img2: np.ndarray, crop_border: int = 0,
                   test_y_channel: bool = False) -> float:
    """Peak signal-to-noise ratio in dB (inf for identical images).

    Args:
        img: (H, W, 3) RGB uint8 (or float, 0-255) restored image.
        img2: Reference image, same shape.
        crop_border: Pixels removed on each side before measuring.
        test_y_channel: Measure the BT.601 Y channel instead of RGB.
    """
    img, img2 = _prepare(img, img2, crop_border, test_y_channel)
    mse = np.mean((img - img2) ** 2)
    return float("inf") if mse == 0 else float(10.0 * np.log10(255.0 ** 2 / mse))


def _ssim_channel(a: np.ndarray, b: np.ndarray) -> float:
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    kernel = cv2.getGaussianKernel(11, 1.5)
    window = kernel @ kernel.T

    def blur(x):  # 'valid' filtering: the 5-pixel rim is dropped, as in the reference definition
        return cv2.filter2D(x, -1, window, borderType=cv2.BORDER_REFLECT)[5:-5, 5:-5]

    mu1, mu2 = blur(a), blur(b)
    s11 = blur(a * a) - mu1 ** 2
    s22 = blur(b * b) - mu2 ** 2
    s12 = blur(a * b) - mu1 * mu2
    ssim_map = ((2 * mu1 * mu2 + c1) * (2 * s12 + c2)) / ((mu1 ** 2 + mu2 ** 2 + c1) * (s11 + s22 + c2))
    return float(ssim_map.mean())


@METRIC_REGISTRY.register()
def calculate_ssim(img: np.ndarray, img2: np.ndarray, crop_border: int = 0,
                   test_y_channel: bool = False) -> float:
    """Structural similarity (mean over channels), in [-1, 1]; 1 for identical images.

    Args:
        img: (H, W, 3) RGB uint8 (or float, 0-255) restored image; H, W > 10 after cropping.
        img2: Reference image, same shape.
        crop_border: Pixels removed on each side before measuring.
        test_y_channel: Measure the BT.601 Y channel instead of RGB.
    """
    img, img2 = _prepare(img, img2, crop_border, test_y_channel)
    return float(np.mean([_ssim_channel(img[..., c], img2[..., c]) for c in range(img.shape[2])]))
