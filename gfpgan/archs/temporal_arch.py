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
        hidden: per adapted scale, (B, hidden_channels, s, s) GRU states of the last frame.
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
        num_scales: adapted decoder levels, from 8 px up (2 or 3: 8, 16[, 32]).
        hidden_channels: GRU state channels per level.
        gate_sharpness: ``a`` of the confidence gate on inputs in [-1, 1], applied to the 3x3 local
            mean of the squared difference (Lai et al. use 50 per pixel on [0, 1] images, i.e. 12.5
            here; the local mean and the coarse scale average noise out, so the gate can be sharper).
        enabled: False runs the base alone (the per-frame generator).
        freeze_base: set ``requires_grad`` False on the base (training the adapter only).
    """

    def __init__(self, base: Union[nn.Module, dict], num_scales: int = 3, hidden_channels: int = 32,
                 gate_sharpness: float = 50.0, enabled: bool = True, freeze_base: bool = False):
        super().__init__()
        if isinstance(base, dict):
            base = ARCH_REGISTRY.build(base)
        if not isinstance(base, (GFPGANv1Clean, GFPGANv1)):
            raise UserError(f"the temporal adapter wraps a GFP-GAN generator (GFPGANv1Clean or GFPGANv1), "
                            f"not {type(base).__name__}.")
        levels = len(base.conv_body_up)
        if not 1 <= num_scales <= levels:
            raise UserError(f"num_scales must be between 1 and {levels} for a {8 * 2 ** (levels - 1)} px "
                            f"generator, got {num_scales}.")
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
        if freeze_base:
            self.base.requires_grad_(False)
        g = self.scales[-1]
        self._state_shapes = ([(self.hidden_channels, s, s) for s in self.scales], (3, g, g))

    @property
    def scales(self) -> List[int]:
        """Side in pixels of each adapted level (8, 16, ...)."""
        return [8 * 2 ** i for i in range(self.num_scales)]

    def init_state(self, batch: int, device=None, dtype=torch.float32) -> TemporalState:
        """The empty state of ``batch`` new tracks (zeros; ``valid`` 0 so the first gate is 0)."""
        g = self.scales[-1]
        hidden = tuple(torch.zeros(batch, self.hidden_channels, s, s, device=device, dtype=dtype)
                       for s in self.scales)
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
        g = self.scales[-1]
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
        size = x.shape[-1]
        # the previous input and the finest state share a grid: one warp (and one coverage) for both
        warped, cover = warp_previous(torch.cat([state.prev_input, state.hidden[-1]], 1), rel_affine, size)
        conf, small = self._confidence(x, warped[:, :3], cover, state.valid)
        prevs = [warp_previous(h, rel_affine, size, coverage=False)[0] for h in state.hidden[:-1]]
        prevs.append(warped[:, 3:])
        hidden = []

        def adapt(i: int, feat: torch.Tensor) -> torch.Tensor:
            if i >= self.num_scales:
                return feat
            k = 2 ** (self.num_scales - 1 - i)  # python ints: the step stays traceable (ONNX)
            c = conf if k == 1 else F.avg_pool2d(conf, k)
            h = self.cells[i](feat, prevs[i] * c)
            hidden.append(h)
            return feat + self.proj[i](h)

        image, out_rgbs = self.base.decode(*self.base.encode(x), return_rgb=return_rgb,
                                           randomize_noise=randomize_noise, adapt=adapt)
        new = TemporalState(tuple(hidden), small, torch.ones_like(state.valid), conf.mean((1, 2, 3)))
        return image, out_rgbs, new

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
        n = self.net.num_scales
        out, new = self.net.step(x, TemporalState(tuple(state[:n]), *state[n:]), rel_affine)
        return (out, *new.hidden, new.prev_input, new.valid, new.gate)
