"""Recurrent temporal adapter around a GFP-GAN generator (learned frame-to-frame context).

Design: a convolutional GRU (Ballas et al.,
"Delving Deeper into Convolutional Networks for Learning Video Representations", ICLR 2016) runs
on the U-Net decoder features of the base generator at two or three coarse scales (8, 16, 32 px).
Per face track and frame:

1. the previous hidden state is warped into the current crop with the relative similarity between
   the two alignments (``gfpgan.motion``; the tracker knows both affines, no flow network);
2. a confidence gate ``exp(-a * box3(mean_c (x_t - W x_{t-1})^2))`` (after Lai et al., ECCV 2018),
   computed on the area-downsampled inputs in [-1, 1] and times the warp's coverage, scales the warped state
   down where the faces disagree (cuts, occlusions, blinks) and to 0 on a track's first frame;
3. the GRU updates the state from the current features and the gated state;
4. a zero-initialised 3x3 projection of the new state is added to the decoder feature, which then
   feeds the CS-SFT conditions and the next decoder level as usual (the base's ``decode(...,
   adapt=...)`` entry point; the base's own forward is untouched).

A GRU rather than an LSTM: one state tensor per scale (one warp, half the state memory of the
cell + hidden pair) and fewer weights. Only the last projection starts at zero, so at
initialisation the output equals the base generator's bit for bit while the gradient still
reaches the projection at once and the GRU after the projection's first update (zeroing a second
factor of the same path, e.g. a gate, would leave the whole path without gradient). With
``enabled`` False the adapter calls the base directly. ``base`` keeps the generator's own
parameter names, so official checkpoints load strictly into ``adapter.base``.

**Frame-recurrent fusion** (``fusion=True``, issue 23; after FRVSR, Sajjadi et al. 2018, and
BasicVSR's full-resolution fusion): the state also holds the previous frame's *restored output*
and its *input* at the crop's full resolution. Both are warped into the current crop by the same
relative similarity, and a small fusion head (two 3x3 convolutions, ``fusion_channels`` wide, at
``1 / fusion_scale`` of the crop) reads the current input, the warped previous input and output,
their difference, the warp's coverage and the confidence gate. Its feature enters where detail
lives, each through a zero-initialised projection (so the module still starts bit-identical to
the base, one forward per face per frame):

* the input side: added to the U-Net's first encoder feature (FRVSR's extra input channels);
* the finest decoder scale: added to the last U-Net decoder level (the CS-SFT conditions that
  modulate the StyleGAN2 layers at full resolution);
* the output: a residual on the restored image, from the feature and the image itself.

All three are multiplied by the track's ``valid`` flag: a track's first frame (and the frame after
a reset) is the base's output bit for bit, so the head learns what the previous frame adds, not a
per-frame filter it would apply with nothing to fuse (the first trained head, without this,
smoothed every frame: -1.2 dB end to end on the first frames alone).

Frames carry independent noise, compression and sub-pixel sampling of the same face, so the
aligned previous output (itself a fusion of the frames before) holds evidence no single frame
has. ``num_scales`` 0 with ``fusion`` runs the fusion alone (no ConvGRU); the ConvGRU design stays
available (``fusion=False``, the default, which old temporal files load as).
"""

from typing import List, NamedTuple, Optional, Sequence, Tuple, Union

import torch
from torch import nn
from torch.nn import functional as F

from gfpgan.archs.gfpgan_arch import GFPGANv1, GFPGANv1Clean
from gfpgan.errors import UserError
from gfpgan.motion import warp_previous
from gfpgan.registry import ARCH_REGISTRY


class TemporalState(NamedTuple):
    """Recurrent state of a batch of face tracks (row b = track b).

    Attributes:
        hidden: per adapted scale, (B, hidden_channels, s, s) GRU states of the last frame; with
            fusion, last, (B, 6, S, S): the last restored output and input at the crop's size.
        prev_input: (B, 3, g, g) the last input in [-1, 1], area-downsampled to the finest adapted
            scale g (what the gate compares the next input with).
        valid: (B,) 1.0 where the track has a previous frame, 0.0 after a reset.
        gate: (B,) mean confidence of the last step (1 = fully trusted previous frame); a caller
            may reset tracks whose gate collapsed.
    """

    hidden: Tuple[torch.Tensor, ...]
    prev_input: torch.Tensor
    valid: torch.Tensor
    gate: torch.Tensor


def reset_state(state: TemporalState, mask: torch.Tensor) -> TemporalState:
    """Zero the rows of ``state`` where ``mask`` (B,) bool is True (new or lost tracks, cuts)."""
    keep = (~mask.bool()).to(state.prev_input.dtype)

    def k(t):
        return t * keep.view(-1, *([1] * (t.ndim - 1)))

    return TemporalState(tuple(k(h) for h in state.hidden), k(state.prev_input), k(state.valid),
                         k(state.gate))


def select_state(state: TemporalState, index: Union[torch.Tensor, Sequence[int]]) -> TemporalState:
    """The rows ``index`` of ``state`` (e.g. the tracks present in this frame)."""
    index = torch.as_tensor(index, dtype=torch.long, device=state.valid.device)
    return TemporalState(tuple(h[index] for h in state.hidden), state.prev_input[index],
                         state.valid[index], state.gate[index])


def cat_states(states: Sequence[TemporalState]) -> TemporalState:
    """Stack several tracks' states along the batch dimension."""
    return TemporalState(tuple(torch.cat(hs) for hs in zip(*(s.hidden for s in states))),
                         torch.cat([s.prev_input for s in states]), torch.cat([s.valid for s in states]),
                         torch.cat([s.gate for s in states]))


def _resize(t: torch.Tensor, size: int) -> torch.Tensor:
    """``t`` resized bilinearly to ``size`` x ``size`` (itself when it already is)."""
    if t.shape[-1] == size:  # python ints while tracing (``size`` is the module's out_size)
        return t
    return F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False)


class ConvGRUCell(nn.Module):
    """Convolutional GRU: ``h' = (1 - z) h + z tanh(W [x, r h])`` with 3x3 convolutions.

    Args:
        in_channels: channels of the input feature x.
        hidden_channels: channels of the state h.
    """

    def __init__(self, in_channels: int, hidden_channels: int):
        super().__init__()
        self.gates = nn.Conv2d(in_channels + hidden_channels, 2 * hidden_channels, 3, 1, 1)
        self.candidate = nn.Conv2d(in_channels + hidden_channels, hidden_channels, 3, 1, 1)

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """(B, C, s, s) feature, (B, Hc, s, s) state -> (B, Hc, s, s) new state."""
        z, r = torch.sigmoid(self.gates(torch.cat([x, h], 1))).chunk(2, 1)
        cand = torch.tanh(self.candidate(torch.cat([x, r * h], 1)))
        return h + z * (cand - h)


@ARCH_REGISTRY.register()
class TemporalGFPGAN(nn.Module):
    """A GFP-GAN generator (``GFPGANv1Clean`` or ``GFPGANv1``) plus a recurrent adapter.

    Args:
        base: the generator module, or its architecture options (``{'type': 'GFPGANv1Clean', ...}``).
        num_scales: ConvGRU decoder levels, from 8 px up (2 or 3: 8, 16[, 32]); 0 (with ``fusion``):
            no ConvGRU.
        hidden_channels: GRU state channels per level.
        gate_sharpness: ``a`` of the confidence gate on inputs in [-1, 1], applied to the 3x3 local
            mean of the squared difference (Lai et al. use 50 per pixel on [0, 1] images, i.e. 12.5
            here; the local mean and the coarse scale average noise out, so the gate can be sharper).
        enabled: False runs the base alone (the per-frame generator).
        freeze_base: set ``requires_grad`` False on the base (training the adapter only).
        fusion: frame-recurrent fusion of the warped previous output and input at the input side,
            the finest decoder scale and the output (module docstring).
        fusion_channels: width of the fusion head.
        fusion_scale: the fusion head runs at ``1 / fusion_scale`` of the crop (1, 2 or 4; its
            features are resized bilinearly to the scales they enter): the cost knob at 512 px.
        fusion_mode: ``residual`` (the head's feature added at the input side, the finest decoder
            level and the output) or ``blend`` (per-pixel gains in (-1, 1) move the input and the
            output towards the warped previous ones: a learned recursive average).
        motion_refine: refine the given motion on the aligned crops before any warp: a two-level
            search of the translation (steps of S/64 then S/128 crop pixels, 3 x 3 candidates each)
            that best matches the previous input to the current one at the gate's grid (the
            residual of landmark fits; no weights, traceable).
    """

    def __init__(self, base: Union[nn.Module, dict], num_scales: int = 3, hidden_channels: int = 32,
                 gate_sharpness: float = 50.0, enabled: bool = True, freeze_base: bool = False,
                 fusion: bool = False, fusion_channels: int = 16, fusion_scale: int = 1,
                 fusion_mode: str = "residual", motion_refine: bool = False):
        super().__init__()
        if isinstance(base, dict):
            base = ARCH_REGISTRY.build(base)
        if not isinstance(base, (GFPGANv1Clean, GFPGANv1)):
            raise UserError(f"the temporal adapter wraps a GFP-GAN generator (GFPGANv1Clean or GFPGANv1), "
                            f"not {type(base).__name__}.")
        levels = len(base.conv_body_up)
        if not (0 if fusion else 1) <= num_scales <= levels:
            raise UserError(f"num_scales must be between {0 if fusion else 1} and {levels} for a "
                            f"{8 * 2 ** (levels - 1)} px generator{' with fusion' if fusion else ''}, "
                            f"got {num_scales}.")
        if fusion_scale not in (1, 2, 4):
            raise UserError(f"fusion_scale must be 1, 2 or 4, got {fusion_scale}.")
        if fusion_mode not in ("residual", "blend"):
            raise UserError(f"fusion_mode must be 'residual' or 'blend', got {fusion_mode!r}.")
        self.base = base
        self.num_scales, self.hidden_channels = int(num_scales), int(hidden_channels)
        self.gate_sharpness, self.enabled = float(gate_sharpness), bool(enabled)
        self.out_size = 2 ** base.log_size
        chans = [base.toRGB[i].weight.shape[1] for i in range(self.num_scales)]
        self.cells = nn.ModuleList(ConvGRUCell(c, self.hidden_channels) for c in chans)
        self.proj = nn.ModuleList(nn.Conv2d(self.hidden_channels, c, 3, 1, 1) for c in chans)
        for p in self.proj:  # the only zero factor of the added path (see the module docstring)
            nn.init.zeros_(p.weight)
            nn.init.zeros_(p.bias)
        self.fusion, self.fusion_channels = bool(fusion), int(fusion_channels)
        self.fusion_scale, self.fusion_mode = int(fusion_scale), str(fusion_mode)
        self.motion_refine = bool(motion_refine)
        if self.fusion:
            c = self.fusion_channels
            ref = next(base.parameters())
            with torch.no_grad():  # the first encoder feature's channels (the layer types differ)
                probe = torch.zeros(1, 3, 8, 8, dtype=ref.dtype, device=ref.device)
                first = base._encode_first(probe).shape[1]
            # 14 inputs: x, warped previous input, warped previous output, their difference to x,
            # coverage, confidence
            self.fuse = nn.Sequential(nn.Conv2d(14, c, 3, 1, 1), nn.LeakyReLU(0.2, True),
                                      nn.Conv2d(c, c, 3, 1, 1), nn.LeakyReLU(0.2, True))
            blend = self.fusion_mode == "blend"  # per-pixel gains towards the previous frame's pixels
            self.fuse_in = nn.Conv2d(c, 1 if blend else first, 3, 1, 1)
            self.fuse_dec = None if blend else nn.Conv2d(c, base.toRGB[levels - 1].weight.shape[1], 3, 1, 1)
            self.fuse_out = nn.Conv2d(c + 3, 1 if blend else 3, 3, 1, 1)
            for p in (self.fuse_in, self.fuse_dec, self.fuse_out):  # the zero factors of each path
                if p is None:
                    continue
                nn.init.zeros_(p.weight)
                nn.init.zeros_(p.bias)
        if freeze_base:
            self.base.requires_grad_(False)
        g = self.gate_size
        maps = [(self.hidden_channels, s, s) for s in self.scales]
        if self.fusion:
            maps.append((6, self.out_size, self.out_size))
        self._state_shapes = (maps, (3, g, g))

    @property
    def scales(self) -> List[int]:
        """Side in pixels of each ConvGRU level (8, 16, ...)."""
        return [8 * 2 ** i for i in range(self.num_scales)]

    @property
    def gate_size(self) -> int:
        """Side of the confidence gate's grid: the finest ConvGRU level (32 px without one)."""
        return self.scales[-1] if self.num_scales else min(32, self.out_size)

    @property
    def num_state_maps(self) -> int:
        """Entries of ``TemporalState.hidden`` (GRU levels, plus the fusion frames)."""
        return self.num_scales + int(self.fusion)

    def init_state(self, batch: int, device=None, dtype=torch.float32) -> TemporalState:
        """The empty state of ``batch`` new tracks (zeros; ``valid`` 0 so the first gate is 0)."""
        g = self.gate_size
        hidden = tuple(torch.zeros(batch, *shape, device=device, dtype=dtype)
                       for shape in self._state_shapes[0])
        z = torch.zeros(batch, device=device, dtype=dtype)
        return TemporalState(hidden, torch.zeros(batch, 3, g, g, device=device, dtype=dtype), z, z.clone())

    def check_state(self, state: TemporalState, x: torch.Tensor) -> None:
        """Raise a UserError unless ``state`` fits this adapter and the batch ``x``."""
        hidden, prev = self._state_shapes
        shapes = [tuple(h.shape[1:]) for h in state.hidden]
        if (shapes != hidden or tuple(state.prev_input.shape[1:]) != prev
                or any(t.shape[0] != x.shape[0] for t in (*state.hidden, state.prev_input, state.valid))):
            raise UserError(f"the temporal state does not fit this module: hidden {shapes} for a batch of "
                            f"{state.valid.shape[0]}, expected {hidden} for a batch of {x.shape[0]}; "
                            f"start from init_state().")

    def gate(self, x: torch.Tensor, state: TemporalState, rel_affine: torch.Tensor
             ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Confidence of the previous frame at the finest adapted scale.

        Args:
            x: (B, 3, S, S) current input in [-1, 1].
            state: the previous state.
            rel_affine: (B, 2, 3) crop t-1 -> crop t in pixels of the S crop.
        Returns:
            (confidence (B, 1, g, g) in [0, 1], the current input at the gate scale (B, 3, g, g)).
        """
        warped, cover = warp_previous(state.prev_input, rel_affine, x.shape[-1])
        return self._confidence(x, warped, cover, state.valid)

    def _confidence(self, x: torch.Tensor, warped: torch.Tensor, cover: torch.Tensor, valid: torch.Tensor
                    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """:meth:`gate` from the previous input already warped into the current crop."""
        g = self.gate_size
        small = F.interpolate(x, size=(g, g), mode="area") if x.shape[-1] != g else x
        err = (small - warped).pow(2).mean(1, keepdim=True)
        # a 3x3 local mean: pixels of two unrelated faces that agree by chance do not open the gate
        err = F.avg_pool2d(err, 3, 1, 1, count_include_pad=False)
        conf = torch.exp(-self.gate_sharpness * err) * cover * valid.view(-1, 1, 1, 1)
        return conf, small

    def forward(self, x: torch.Tensor, state: Optional[TemporalState] = None,
                rel_affine: Optional[torch.Tensor] = None, return_rgb: bool = False,
                randomize_noise: Optional[bool] = None
                ) -> Tuple[torch.Tensor, List[torch.Tensor], TemporalState]:
        """One frame of every track: see :meth:`step`; also returns the U-Net's RGB pyramid."""
        if state is None:
            state = self.init_state(x.shape[0], x.device, x.dtype)
        if not self.enabled:
            out, rgbs = self.base(x, return_rgb=return_rgb, randomize_noise=randomize_noise)
            return out, rgbs, state
        self.check_state(state, x)
        if rel_affine is None:
            rel_affine = torch.eye(2, 3, device=x.device, dtype=x.dtype).expand(x.shape[0], 2, 3)
        size, n = x.shape[-1], self.num_scales
        if self.motion_refine:
            rel_affine = self.refine_motion(x, state, rel_affine)
        # the previous input and the finest state share a grid: one warp (and one coverage) for both
        grids = [state.prev_input] + ([state.hidden[n - 1]] if n else [])
        warped, cover = warp_previous(torch.cat(grids, 1), rel_affine, size)
        conf, small = self._confidence(x, warped[:, :3], cover, state.valid)
        prevs = [warp_previous(h, rel_affine, size, coverage=False)[0] for h in state.hidden[:max(n - 1, 0)]]
        if n:
            prevs.append(warped[:, 3:])
        hidden = []
        fused, prev_out, prev_in = (self._fusion_feature(x, state, rel_affine, conf) if self.fusion
                                    else (None, None, None))
        # the fusion acts only where a previous frame exists: a track's first frame (and the frame
        # after a reset) is the base's bit for bit, so the head cannot learn a per-frame filter
        # that it would also apply with nothing to fuse
        has_prev = state.valid.view(-1, 1, 1, 1)
        last = len(self.base.conv_body_up) - 1

        def adapt(i: int, feat: torch.Tensor) -> torch.Tensor:
            if i < n:
                k = 2 ** (n - 1 - i)  # python ints: the step stays traceable (ONNX)
                c = conf if k == 1 else F.avg_pool2d(conf, k)
                h = self.cells[i](feat, prevs[i] * c)
                hidden.append(h)
                feat = feat + self.proj[i](h)
            if fused is not None and self.fuse_dec is not None and i == last:
                # python ints in the resize: traceable
                feat = feat + self.fuse_dec(_resize(fused, self.out_size)) * has_prev
            return feat

        if fused is None:
            image, out_rgbs = self.base.decode(*self.base.encode(x), return_rgb=return_rgb,
                                               randomize_noise=randomize_noise, adapt=adapt)
        elif self.fusion_mode == "blend":
            # a Kalman-like recursive average: the input moves towards the warped previous (already
            # averaged) input, the output towards the warped previous output, by per-pixel gains
            # tanh(.) (0 at initialisation, where a clamp to [0, 1] would pass no gradient); it can
            # only bring the previous frame in, not filter a frame on its own
            full = _resize(fused, self.out_size)
            gain_in = torch.tanh(self.fuse_in(full)) * has_prev
            x = x + gain_in * (prev_in - x)
            image, out_rgbs = self.base.decode(*self.base.encode(x), return_rgb=return_rgb,
                                               randomize_noise=randomize_noise, adapt=adapt)
            low = image.to(fused.dtype)
            gain_out = torch.tanh(self.fuse_out(torch.cat([full, low], 1))) * has_prev
            image = image + (gain_out * (prev_out - low)).to(image.dtype)
            hidden.append(torch.cat([image.to(x.dtype), x], 1))
        else:
            image, out_rgbs = self.base.decode(*self._encode(x, fused, has_prev), return_rgb=return_rgb,
                                               randomize_noise=randomize_noise, adapt=adapt)
            # the decoder's RGB chain may run in fp32 under a bf16 net: the head and the state keep
            # the net's dtype, the image its own
            low = image.to(fused.dtype)
            res = self.fuse_out(torch.cat([_resize(fused, self.out_size), low], 1)) * has_prev
            image = image + res.to(image.dtype)
            hidden.append(torch.cat([image.to(x.dtype), x], 1))
        new = TemporalState(tuple(hidden), small, torch.ones_like(state.valid), conf.mean((1, 2, 3)))
        return image, out_rgbs, new

    def refine_motion(self, x: torch.Tensor, state: TemporalState, rel_affine: torch.Tensor) -> torch.Tensor:
        """``rel_affine`` followed by the translation that best aligns the previous input with
        ``x`` (see ``motion_refine``): (B, 2, 3) in pixels of the crop."""
        g = self.gate_size
        small = F.interpolate(x, size=(g, g), mode="area") if x.shape[-1] != g else x
        rel = rel_affine.float()
        for step in (self.out_size / 64.0, self.out_size / 128.0):
            cands, errs = [], []
            for dy in (-step, 0.0, step):
                for dx in (-step, 0.0, step):
                    cand = torch.cat([rel[:, :, :2], rel[:, :, 2:] + rel.new_tensor([[dx], [dy]])], 2)
                    warped, cover = warp_previous(state.prev_input, cand, self.out_size)
                    inside = (cover > 0.999).to(small.dtype)
                    err = ((small - warped).pow(2).mean(1, keepdim=True) * inside).sum((1, 2, 3))
                    errs.append(err / inside.sum((1, 2, 3)).clamp(min=1.0))
                    cands.append(cand)
            best = torch.stack(errs, 1).argmin(1)  # (B,)
            rel = torch.stack(cands, 1)[torch.arange(rel.shape[0], device=rel.device), best]
        return rel.to(rel_affine.dtype)

    def _fusion_feature(self, x: torch.Tensor, state: TemporalState, rel_affine: torch.Tensor,
                        conf: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The fusion head's feature (B, fusion_channels, S / fusion_scale, ...) of this frame, and
        the previous output and input warped into the current crop (zeros without one)."""
        size = self.out_size
        valid = state.valid.view(-1, 1, 1, 1)
        prev, cover = warp_previous(state.hidden[-1], rel_affine, size)
        prev = prev * valid
        prev_out, prev_in = prev[:, :3], prev[:, 3:]
        inp = torch.cat([x, prev_in, prev_out, prev_in - x, cover * valid, _resize(conf, size)], 1)
        if self.fusion_scale > 1:
            inp = F.avg_pool2d(inp, self.fusion_scale)
        return self.fuse(inp), prev_out, prev_in

    def _encode(self, x: torch.Tensor, fused: torch.Tensor, has_prev: torch.Tensor):
        """The base's :meth:`encode` with the fusion feature added to its first feature."""
        extra = self.fuse_in(_resize(fused, self.out_size)) * has_prev
        return self.base.encode(x, adapt=lambda feat: feat + extra)

    def step(self, x: torch.Tensor, state: TemporalState, rel_affine: torch.Tensor
             ) -> Tuple[torch.Tensor, TemporalState]:
        """Restore the current crop of every track and advance their states.

        Args:
            x: (B, 3, S, S) aligned degraded faces in [-1, 1], one per track.
            state: the tracks' states (:meth:`init_state` for new tracks).
            rel_affine: (B, 2, 3) float relative similarity crop t-1 -> crop t in pixels of the S crop
                (:func:`gfpgan.motion.relative_affine`; identity for a static face).
        Returns:
            (restored faces (B, 3, S, S) roughly in [-1, 1], the new state).
        """
        out, _, state = self(x, state, rel_affine)
        return out, state

    def forward_clip(self, clip: torch.Tensor, rel_affines: torch.Tensor,
                     state: Optional[TemporalState] = None, return_rgb: bool = False,
                     detach_state: bool = False, randomize_noise: Optional[bool] = None
                     ) -> Tuple[torch.Tensor, List[List[torch.Tensor]], TemporalState]:
        """Run a whole clip (training, evaluation).

        Args:
            clip: (B, T, 3, S, S) degraded clips in [-1, 1].
            rel_affines: (B, T, 2, 3) transforms crop t-1 -> crop t (entry 0 is unused when
                ``state`` is None and relates to the state's frame otherwise).
            state: the state before frame 0 (None: new tracks).
            return_rgb: also return each frame's U-Net RGB pyramid.
            detach_state: cut the gradient between frames (truncated back-propagation of length 1).
            randomize_noise: passed to the StyleGAN decoder.
        Returns:
            (restored (B, T, 3, S, S), per-frame RGB pyramids (T lists, empty without
            ``return_rgb``), the state after the last frame).
        """
        if clip.ndim != 5 or rel_affines.shape[:2] != clip.shape[:2] or rel_affines.shape[2:] != (2, 3):
            raise UserError(f"a clip is (B, T, 3, S, S) with (B, T, 2, 3) transforms, got "
                            f"{tuple(clip.shape)} and {tuple(rel_affines.shape)}.")
        outs, pyramids = [], []
        for t in range(clip.shape[1]):
            out, rgbs, state = self(clip[:, t], state, rel_affines[:, t], return_rgb, randomize_noise)
            if detach_state:
                state = TemporalState(tuple(h.detach() for h in state.hidden),
                                      *(v.detach() for v in state[1:]))
            outs.append(out)
            pyramids.append(rgbs)
        return torch.stack(outs, 1), pyramids, state


class TemporalStep(nn.Module):
    """One step of a :class:`TemporalGFPGAN` with flat tensor inputs and outputs, for export.

    ``forward(x, rel_affine, *hidden, prev_input, valid, gate) -> (out, *hidden, prev_input, valid,
    gate)``, the state's fields in :class:`TemporalState` order. ONNX needs opset 20 or later
    (``affine_grid``).
    """

    def __init__(self, net: TemporalGFPGAN):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor, rel_affine: torch.Tensor,
                *state: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        n = self.net.num_state_maps
        out, new = self.net.step(x, TemporalState(tuple(state[:n]), *state[n:]), rel_affine)
        return (out, *new.hidden, new.prev_input, new.valid, new.gate)
