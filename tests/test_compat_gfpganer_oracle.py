"""GFPGANer against the reference's GFPGANer (gfpgan==1.3.8, in a subprocess) on the same files.

Whole image: the astronaut photo at upscale 2 through both restorers, each loading the same three
files: a GFPGANv1Clean at 512 px (narrow, random weights, noise strengths set so the noise
matters), a ``detection_Resnet50_Final.pth`` and a ``parsing_parsenet.pth`` (neither is
downloadable here). The reference's noise is made deterministic as the network parity tests do
it (``randomize_noise=False``: the stored buffers, which this project always uses).

The detector is facexlib's RetinaFace-ResNet50 with its random initialisation (seed 0) except for
its three 1x1 heads: the box and landmark heads give constant offsets (the astronaut's face box and
five landmarks relative to a stride-32 anchor), and the class head is a least-squares fit on the
network's own features of this photo that scores two anchors above the 0.97 threshold and every
other below it. So the boxes, scores and landmarks both restorers see come out of the same
network run by their own detection code, at a real face (the astronaut's) and at a second place,
and the face selection, alignment, restoration, parsing masks and paste are compared on them.
ParseNet keeps its random initialisation (seed 1): its masks are arbitrary but the same network's.

The tolerances asserted here are stated in the README ("Using it from existing code").
"""

import cv2
import numpy as np
import pytest
import skimage.data
import torch

from gfpgan.compat import gfpganer as gfpganer_module
from gfpgan.compat.gfpganer import GFPGANer
from tests.oracle import require_oracle, run_oracle

pytestmark = [pytest.mark.oracle, pytest.mark.slow]  # ~40 s and ~30 s of CPU on 2 cores

NARROW = dict(num_style_feat=16, channel_multiplier=1, narrow=1 / 8)
UPSCALE = 1  # roop, facefusion, webui, Deep-Live-Cam
# the astronaut's face as MTCNN finds it: five landmarks and box, in photo pixels
LANDMARKS = np.array([[205.0, 101.7], [246.8, 103.7], [224.7, 129.0], [201.7, 139.2], [245.3, 141.9]])
BOX = np.array([181.1, 62.2, 267.7, 172.1])
ANCHOR_SIZE, STRIDE = 256.0, 32  # the first anchor of RetinaFace's stride-32 level
FACE_ANCHORS = ((3, 7), (11, 11))  # (row, column) on the stride-32 grid: the face, a second place


def _narrow_net(arch="clean", channel_multiplier=2):
    from gfpgan.compat.archs import GFPGANv1Clean

    return GFPGANv1Clean(out_size=512, decoder_load_path=None, fix_decoder=False, num_mlp=8,
                         input_is_latent=True, different_w=True, sft_half=True, **NARROW)


def retinaface_state(img_bgr: np.ndarray) -> dict:
    """facexlib's RetinaFace-ResNet50 (seed 0) whose heads find :data:`FACE_ANCHORS` in ``img_bgr``."""
    from facexlib.detection.retinaface import RetinaFace

    torch.manual_seed(0)
    net = RetinaFace(network_name="resnet50", half=False, device=torch.device("cpu")).eval()
    centre = np.array(FACE_ANCHORS[0][::-1]) * STRIDE + STRIDE / 2  # (x, y) of the face's anchor
    # decoding: box centre and points = anchor + b * 0.1 * size, box side = size * exp(b * 0.2)
    box_bias = np.concatenate([((BOX[:2] + BOX[2:]) / 2 - centre) / (0.1 * ANCHOR_SIZE),
                               np.log((BOX[2:] - BOX[:2]) / ANCHOR_SIZE) / 0.2])
    landmark_bias = ((LANDMARKS - centre) / (0.1 * ANCHOR_SIZE)).reshape(-1)
    with torch.no_grad():
        for k in range(3):
            cls, box, lmk = (h[k].conv1x1 for h in (net.ClassHead, net.BboxHead, net.LandmarkHead))
            for conv in (cls, box, lmk):
                conv.weight.zero_()
            box.bias.copy_(torch.tensor(np.tile(box_bias, 2)))
            lmk.bias.copy_(torch.tensor(np.tile(landmark_bias, 2)))
            cls.bias.copy_(torch.tensor([10.0, -10.0, 10.0, -10.0]))  # background everywhere
        x = torch.from_numpy(img_bgr.astype(np.float32).transpose(2, 0, 1))[None] - net.mean_tensor
        feat = net.ssh3(net.fpn(list(net.body(x).values()))[2])[0].double()  # (C, H, W), stride 32
        c, h, w = feat.shape
        f = feat.reshape(c, -1).T
        mean, std = f.mean(0), f.std(0) + 1e-6
        a = torch.cat([(f - mean) / std, torch.ones(h * w, 1, dtype=torch.float64)], 1)
        target = -torch.ones(h * w, dtype=torch.float64)
        for i, j in FACE_ANCHORS:
            target[i * w + j] = 1.0
        sol = torch.linalg.solve(a.T @ a + 1e-3 * torch.eye(c + 1, dtype=torch.float64), a.T @ target)
        weight = sol[:c] / std
        # face-minus-background logit: logit(0.97) + 4 * fit, so the fit's +-1 is +-4 logits from it
        head = net.ClassHead[2].conv1x1
        head.weight[1, :, 0, 0] = (4 * weight).float()
        head.bias[:2] = torch.tensor([0.0, float(4 * (sol[c] - (weight * mean).sum()) + np.log(0.97 / 0.03))])
    return net.state_dict()


@pytest.fixture(scope="module")
def photo():
    return np.ascontiguousarray(skimage.data.astronaut()[:, :, ::-1])  # BGR, as cv2.imread gives


@pytest.fixture(scope="module")
def files(tmp_path_factory, photo):
    """A folder with the three weights files, laid out where this project looks for them."""
    require_oracle()
    from facexlib.parsing.parsenet import ParseNet

    root = tmp_path_factory.mktemp("gfpganer_oracle")
    weights = root / "experiments" / "pretrained_models"
    weights.mkdir(parents=True)
    torch.save(retinaface_state(photo), weights / "detection_Resnet50_Final.pth")
    torch.manual_seed(1)
    parse = ParseNet(in_size=512, out_size=512, parsing_ch=19)
    with torch.no_grad():  # every pixel "skin" (class 1): the blend mask is the processing alone
        parse.out_mask_conv.conv2d.weight.zero_()
        parse.out_mask_conv.conv2d.bias.fill_(-10.0)[1] = 10.0
    torch.save(parse.state_dict(), weights / "parsing_parsenet.pth")
    torch.manual_seed(2)
    net = _narrow_net()
    with torch.no_grad():  # trained networks inject noise; a fresh one has zero noise strengths
        for p in net.stylegan_decoder.parameters():
            if p.numel() == 1:
                p.fill_(0.3)
    torch.save({"params_ema": net.state_dict()}, root / "GFPGANv1.4.pth")
    return root


REFERENCE = """
import os
import numpy as np
# FaceRestoreHelper(model_rootpath='gfpgan/weights') finds the files there and downloads nothing
os.makedirs("gfpgan/weights")
for name in ("detection_Resnet50_Final.pth", "parsing_parsenet.pth"):
    os.symlink(os.path.join(IN["weights"], name), os.path.join("gfpgan/weights", name))
import gfpgan.utils as U
Clean = U.GFPGANv1Clean
U.GFPGANv1Clean = lambda **kw: Clean(**dict(kw, **IN["narrow"]))  # the narrow network the file holds
r = U.GFPGANer(model_path=IN["model"], upscale=IN["upscale"], arch="clean", channel_multiplier=2,
               device="cpu")
forward = r.gfpgan.forward
r.gfpgan.forward = lambda x, **kw: forward(x, **dict(kw, randomize_noise=False))  # the stored noise
img = IN["img"].numpy()
h = r.face_helper
cropped, restored, none = r.enhance(img, has_aligned=False, only_center_face=False, paste_back=False)
OUT["det"] = torch.tensor(np.array(h.det_faces))
OUT["landmarks"] = torch.tensor(np.array(h.all_landmarks_5))
OUT["affines"] = torch.tensor(np.array(h.affine_matrices))
OUT["cropped"] = torch.from_numpy(np.stack(cropped))
OUT["restored"] = torch.from_numpy(np.stack(restored))
OUT["none"] = torch.tensor(none is None)
_, restored, out = r.enhance(img, has_aligned=False, only_center_face=True, paste_back=True)
OUT["center"] = torch.tensor(np.array(h.all_landmarks_5))
OUT["center_restored"] = torch.from_numpy(np.stack(restored))
OUT["img"] = torch.from_numpy(out)
OUT["center_affine"] = torch.tensor(np.array(h.affine_matrices))
"""


@pytest.fixture(scope="module")
def reference(files, photo):
    return run_oracle(REFERENCE, {"weights": str(files / "experiments" / "pretrained_models"),
                                  "model": str(files / "GFPGANv1.4.pth"), "narrow": NARROW,
                                  "upscale": UPSCALE, "img": torch.from_numpy(photo)})


@pytest.fixture(scope="module")
def ours(files, photo):
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(files)  # experiments/pretrained_models/ of the working directory
        mp.setattr(gfpganer_module, "build_reference_net", _narrow_net)
        # fp32: the reference's computation (the default on a CPU with native bf16 is bf16)
        r = GFPGANer(model_path=str(files / "GFPGANv1.4.pth"), upscale=UPSCALE, device="cpu",
                     precision="fp32")
        seen = []
        detect = r.stages.detect_batch
        mp.setattr(r.stages, "detect_batch", lambda frames: seen.append(detect(frames)) or seen[-1])
        out = dict(zip(("cropped", "restored", "none"), r.enhance(photo, paste_back=False)))
        _, out["center_restored"], out["img"] = r.enhance(photo, only_center_face=True)
        out["det"] = seen[0][0]
        out["center"] = r._detect(cv2.cvtColor(photo, cv2.COLOR_BGR2RGB), True).landmarks
        out["detector"] = r.stages.detector
        return out


def test_the_same_faces_are_found_with_the_same_landmarks(reference, ours):
    from gfpgan.inference.faces.detection import RetinaFaceDetector

    assert isinstance(ours["detector"], RetinaFaceDetector)  # the file was found, not MTCNN's fallback
    det, theirs = ours["det"], reference["det"].numpy()
    assert len(det) == len(theirs) == 2
    assert np.abs(det.boxes - theirs[:, :4]).max() <= 1e-3
    assert np.abs(det.scores - theirs[:, 4]).max() <= 1e-6 and det.scores.min() > 0.97
    assert np.abs(det.landmarks - reference["landmarks"].numpy()).max() <= 1e-3
    # the detector was built to find the astronaut's face (and one other place), and it does
    assert np.abs(det.landmarks[1] - LANDMARKS).max() < 0.01
    # only_center_face: the same face, the astronaut's
    assert len(ours["center"]) == len(reference["center"]) == 1
    assert np.abs(ours["center"] - reference["center"].numpy()).max() <= 1e-3
    assert np.abs(ours["center"][0] - LANDMARKS).max() < 0.01


def test_alignment_crops_and_restored_faces_within_one_level(reference, ours):
    from gfpgan.inference.faces.alignment import estimate_affine

    # the reference's LMEDS fit, refined on all five points, is the least-squares similarity
    affines = np.stack([estimate_affine(lm, 512) for lm in ours["det"].landmarks])
    assert np.abs(affines - reference["affines"].numpy()).max() <= 1e-3
    assert ours["none"] is None and bool(reference["none"])
    for key in ("cropped", "restored", "center_restored"):
        theirs, mine = reference[key].numpy().astype(int), np.stack(ours[key]).astype(int)
        assert theirs.shape == mine.shape and mine.shape[1:] == (512, 512, 3)
        diff = np.abs(theirs - mine)
        assert diff.max() <= 1, key  # within 1/255
        assert (diff > 0).mean() <= 1e-4, key
    change = np.abs(np.stack(ours["restored"]).astype(int) - np.stack(ours["cropped"]))
    assert change.mean() > 5  # the network (with its noise) really changed the faces


def _crop_region(affine: np.ndarray, lo: float, hi: float, grow: int, shape) -> np.ndarray:
    """The pixels of a frame covered by the crop square [lo, hi]^2 of a frame->crop affine, grown
    (or, negative, shrunk) by ``grow`` pixels."""
    from gfpgan.inference.faces.alignment import invert_affine

    inv = invert_affine(affine)
    corners = np.array([[lo, lo], [hi, lo], [hi, hi], [lo, hi]], np.float64) @ inv[:, :2].T + inv[:, 2]
    mask = np.zeros(shape, np.uint8)
    cv2.fillConvexPoly(mask, np.round(corners * 16).astype(np.int32), 1, shift=4)
    kernel = np.ones((2 * abs(grow) + 1,) * 2, np.uint8)
    return (cv2.dilate(mask, kernel) if grow > 0 else cv2.erode(mask, kernel)).astype(bool)


def test_pasted_image_equal_outside_the_face_and_within_one_level_where_fully_blended(reference, ours, photo):
    """Outside the face's crop square the image is untouched in both; where this package's blend
    weight is 1 (the central square of 76% of the crop's side: its feather ramps over the outer 2% + 10%) the
    pixels equal the reference's within 1 level. In between, the feather differs on purpose from
    the reference's mask (ParseNet's, cut to 0 at 10 px of 512 from the crop's edge)."""
    from gfpgan.inference.faces.alignment import estimate_affine

    theirs, mine = reference["img"].numpy(), ours["img"]
    assert theirs.shape == mine.shape == photo.shape and mine.dtype == theirs.dtype == np.uint8
    diff = np.abs(theirs.astype(int) - mine).max(2)
    affine = estimate_affine(ours["center"][0], 512)
    outside = ~_crop_region(affine, -0.5, 511.5, 3, photo.shape[:2])
    full = _crop_region(affine, 62, 450, -3, photo.shape[:2])  # feather_mask(512) == 1 there
    assert outside.mean() > 0.5 and full.sum() > 10000
    assert np.array_equal(mine[outside], photo[outside]) and diff[outside].max() == 0
    assert diff[full].max() <= 1 and (diff[full] > 0).mean() <= 1e-3
    assert np.abs(mine[full].astype(int) - photo[full]).mean() > 5  # a face was pasted there
    # the other face was not restored (only_center_face)
    other = _crop_region(estimate_affine(ours["det"].landmarks[0], 512), -0.5, 511.5, 3, photo.shape[:2])
    assert np.array_equal(mine[other & outside], photo[other & outside])


def test_enhance_with_the_real_512_network_matches_reference_via_bench_compat(tmp_path):
    """``bench_compat``: GFPGANer(arch='clean', channel_multiplier=2) as the clients build it, with the
    released network size (random weights, noise strengths 0.1), on an aligned face, ours beside the
    reference's (its noise fixed to the stored buffers): the restored faces are within 1/255."""
    import json

    from gfpgan.tools.bench_compat import main as bench_main
    from tests.oracle import ORACLE_DIR

    require_oracle()
    out = tmp_path / "compat.json"
    assert bench_main(["--faces", "1", "--warmup", "0", "--reference-dir", str(ORACLE_DIR),
                       "--json", str(out)]) == 0
    rows = {(r["impl"], r["precision"]): r for r in json.loads(out.read_text())["rows"]}
    assert ("reference", "fp32") in rows, "the reference's GFPGANer did not run (see the output above)"
    ref = rows[("reference", "fp32")]
    assert ref["noise"] == "fixed"
    assert ref["max_abs_diff_vs_ours"] <= 1  # within 1/255 of ours in fp32
    assert ref["fraction_differing"] <= 1e-3
    # the network changed the face: the agreement means something
    assert rows[("ours", "fp32")]["mean_abs_change"] > 5
    # the default (bf16 on a CPU that computes it natively) stays within a few levels of fp32
    auto = rows[("ours", "auto")]
    assert auto["runs_as"] in ("bf16", "fp32") and auto["mean_abs_diff_vs_fp32"] < 1.0
