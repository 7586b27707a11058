"""Install GFPGAN-Video (distribution ``gfpgan``): ``pip install -e .`` (add ``[dev]`` for tests and lint)."""

import os

from setuptools import find_packages, setup

HERE = os.path.dirname(os.path.abspath(__file__))


def read_version() -> str:
    with open(os.path.join(HERE, "gfpgan", "__init__.py"), encoding="utf-8") as f:
        for line in f:
            if line.startswith("__version__"):
                return line.split("=")[1].strip().strip('"')
    raise RuntimeError("gfpgan/__init__.py has no __version__")


# The distribution is called ``gfpgan``, like the reference (TencentARC/GFPGAN), because programs
# that import gfpgan declare a dependency on it (Real-ESRGAN: gfpgan>=1.3.5; roop, facefusion 1.x:
# gfpgan==1.3.8): with another name, installing one of them would pull the reference into the same
# import name and replace this package's code. The public version says which reference release's
# API this package provides; the local label carries this project's own version. PEP 440 ignores a
# local label when matching a public specifier, so 1.3.8+video.X satisfies both pins above and pip
# keeps this package (see "Installing beside programs that use gfpgan" in the README).
REFERENCE_API_VERSION = "1.3.8"

INSTALL_REQUIRES = [
    "torch>=2.1",
    "torchvision>=0.16",
    # basicsr 1.4.2 imports a torchvision module removed in 0.17; basicsr-fixed is the same code
    # with that import corrected. The package still imports as ``basicsr``.
    "basicsr-fixed>=1.4.2",
    "facexlib>=0.3.0",
    "lpips>=0.1.4",
    "numpy>=1.24",
    "opencv-python>=4.8",
    # images are read as viewers show them: EXIF orientation, colour profiles (littlecms), CMYK
    "Pillow>=9.1",
    "pyyaml>=6.0",
    "tensorboard>=2.12",
    "av>=12.0",  # PyAV: FFmpeg's libraries in the wheel, for streaming video and audio
    # 2.5.x ships MTCNN weights and has loose pins; 2.6 pins torch<2.3 and numpy<2.
    "facenet-pytorch>=2.5.3,<2.6",
    "lmdb>=1.4",
    "safetensors>=0.4",
    "scipy>=1.10",
    "scikit-image>=0.21",
    "tqdm>=4.60",
    "matplotlib>=3.7",
    "onnx>=1.15",
    "onnxruntime>=1.17",
]

EXTRAS = {
    "dev": ["pytest>=7.4", "pytest-timeout>=2.2", "ruff>=0.4,<1"],
    # the web page (python -m gfpgan.app); tested with gradio 6.31, whose file routes it relies on
    "app": ["gradio>=6.31,<7"],
    # its browser test drives Debian's chromium (apt-get install chromium) with Playwright
    "app-test": ["gradio>=6.31,<7", "playwright>=1.65,<2"],
}

CONSOLE_SCRIPTS = [
    "gfpgan-train=gfpgan.train:cli",
    "gfpgan-test=gfpgan.test:cli",
    "gfpgan-infer-image=gfpgan.infer_image:cli",
    "gfpgan-infer-video=gfpgan.infer_video:cli",
    "gfpgan-convert=gfpgan.tools.convert_checkpoint:cli",
    "gfpgan-export=gfpgan.tools.export:cli",
    "gfpgan-prepare=gfpgan.tools.prepare_faces:cli",
    "gfpgan-component-boxes=gfpgan.tools.component_boxes:cli",
    "gfpgan-make-testset=gfpgan.tools.make_testset:cli",
    "gfpgan-make-video-testset=gfpgan.tools.make_video_testset:cli",
    "gfpgan-to-lmdb=gfpgan.tools.to_lmdb:cli",
    "gfpgan-fid-stats=gfpgan.tools.fid_stats:cli",
    "gfpgan-compare-videos=gfpgan.tools.compare_videos:cli",
    "gfpgan-check-formats=gfpgan.tools.check_formats:cli",
    "gfpgan-bench-generator=gfpgan.tools.bench_generator:cli",
    "gfpgan-bench-dataset=gfpgan.tools.bench_dataset:cli",
    "gfpgan-bench-train=gfpgan.tools.bench_train:cli",
    "gfpgan-bench-video=gfpgan.tools.bench_video:cli",
    "gfpgan-bench-export=gfpgan.tools.bench_export:cli",
    "gfpgan-bench-compat=gfpgan.tools.bench_compat:cli",
    "gfpgan-bench-temporal=gfpgan.tools.bench_temporal:cli",
    "gfpgan-bench-personal=gfpgan.tools.bench_personal:cli",
    "gfpgan-bench-prior=gfpgan.tools.bench_prior:cli",
    "gfpgan-personalize=gfpgan.personalize:cli",
    "gfpgan-demo=gfpgan.demo:cli",
    "gfpgan-app=gfpgan.app.server:cli",
]

setup(
    name="gfpgan",
    version=f"{REFERENCE_API_VERSION}+video.{read_version()}",
    description="Blind face restoration in images and video with a generative facial prior (GFPGAN)",
    long_description=open(os.path.join(HERE, "README.md"), encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.9",
    packages=find_packages(include=["gfpgan", "gfpgan.*"]),
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS,
    entry_points={"console_scripts": CONSOLE_SCRIPTS},
)
