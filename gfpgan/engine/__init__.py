"""The training engine: the loop (trainer), checkpoints/resume, EMA, sampler, logging, validation.

Training-only code (imports TensorBoard via the logger): the inference path never imports it.
Import the submodules by name, e.g. ``from gfpgan.engine.ema import ModelEMA``.
"""
