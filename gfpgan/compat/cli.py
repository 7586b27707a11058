"""The reference's command-line spelling (``inference_gfpgan.py`` of TencentARC/GFPGAN 1.3.8),
accepted by ``python -m gfpgan.infer_image`` as aliases of its own options.

=========================  ==================================================================
reference                  here
=========================  ==================================================================
``-v/--version V``         ``--model <card>``: 1 -> GFPGANv1, 1.2 -> GFPGANCleanv1-NoCE-C2,
                           1.3, 1.4 -> GFPGANv1.3/1.4, RestoreFormer -> RestoreFormer
``-s/--upscale S``         ``--upscale S``
``--bg_upsampler NAME``    ``realesrgan``: ``--bg-upsampler`` with the local
                           RealESRGAN_x2plus.pth (never downloaded); any other name: none
``--bg_tile N``            ``--bg-tile N``
``--only_center_face``     ``--only center``
``-w/--weight W``          ``--strength`` from the fidelity weight (0.5 or less = full
                           restoration, 1 = the input face); the reference ignores it
``--aligned``, ``--ext``,  the same options (the output layout is the reference's)
``--suffix``
=========================  ==================================================================

Unlike the reference, the background upsampler is off unless asked for (the reference defaults
to ``realesrgan`` and then drops it on CPU with a warning).
"""

import argparse

from gfpgan.errors import UserError

__all__ = ["VERSIONS", "add_reference_options", "apply_reference_options"]

# the reference's -v values -> model card names (1.2 is published as GFPGANCleanv1-NoCE-C2.pth)
VERSIONS = {"1": "GFPGANv1", "1.2": "GFPGANCleanv1-NoCE-C2", "1.3": "GFPGANv1.3", "1.4": "GFPGANv1.4",
            "RestoreFormer": "RestoreFormer"}


def add_reference_options(parser: argparse.ArgumentParser) -> None:
    """Add the reference's spellings to ``parser`` (which already has ``--upscale``, ``--bg-tile``,
    ``--aligned``, ``--ext``, ``--suffix``, ``--model``, ``--strength``, ``--only``)."""
    group = parser.add_argument_group("the reference's spelling (inference_gfpgan.py)")
    hide = argparse.SUPPRESS  # the alias never overwrites its target's default
    group.add_argument("-v", "--version", dest="ref_version", default=None, choices=list(VERSIONS),
                       help="model version, as --model " + ", ".join(f"{k}={v}" for k, v in VERSIONS.items()))
    group.add_argument("-s", dest="upscale", type=float, default=hide, help="same as --upscale")
    group.add_argument("--bg_upsampler", dest="ref_bg_upsampler", default=None, metavar="NAME",
                       help="realesrgan: Real-ESRGAN x2plus from experiments/pretrained_models; other: none")
    group.add_argument("--bg_tile", dest="bg_tile", type=int, default=hide, help="same as --bg-tile")
    group.add_argument("--only_center_face", dest="ref_only_center_face", action="store_true",
                       help="same as --only center")
    group.add_argument("-w", "--weight", dest="ref_weight", type=float, default=None,
                       help="fidelity weight 0..1 (0.5 or less: full restoration, 1: the input face)")


def apply_reference_options(args: argparse.Namespace, default_model: str) -> argparse.Namespace:
    """Translate the reference's options into this command's own, in place.

    Args:
        args: the parsed namespace.
        default_model: the parser's default ``--model`` (to tell it from an explicit choice).

    Raises:
        UserError: ``-v`` together with a different explicit ``--model``, or a bad ``-w``.
    """
    if args.ref_version is not None:
        card = VERSIONS[args.ref_version]
        if args.model not in (default_model, card):
            raise UserError(f"-v {args.ref_version} and --model {args.model} name different models; "
                            f"give one of them.")
        args.model = card
    if args.ref_only_center_face:
        args.only = "center"
    if args.ref_weight is not None:
        from gfpgan.compat.archs import weight_to_strength

        args.strength = weight_to_strength(args.ref_weight)
    if args.ref_bg_upsampler is not None and args.bg_upsampler is None:
        if args.ref_bg_upsampler.lower() == "realesrgan":
            from gfpgan.compat.weights import WEIGHT_DIRS
            from gfpgan.model_cards import resolve_weights

            args.bg_upsampler = str(resolve_weights("RealESRGAN_x2plus", search_dirs=WEIGHT_DIRS))
    return args
