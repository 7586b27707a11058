"""GFPGANer as its clients call it (roop/facefusion, AUTOMATIC1111 webui, Deep-Live-Cam,
Real-ESRGAN, the reference's own script), on the astronaut photo (MTCNN finds its face).

The network is the reference-named class GFPGANer builds, at 512 px but narrow (the real width
costs seconds per face on a CPU thread); its weights are random, saved in the official layout."""

import threading

import cv2
import numpy as np
import pytest
import skimage.data
import torch

import gfpgan
from gfpgan import GFPGANer
from gfpgan.archs import gfpganv1_clean_arch
from gfpgan.compat import gfpganer as gfpganer_module
from gfpgan.errors import UserError

NARROW = dict(num_style_feat=16, channel_multiplier=1, narrow=1 / 8)


def _narrow_net(arch, channel_multiplier=2):
    kw = dict(out_size=512, decoder_load_path=None, fix_decoder=False, num_mlp=8, input_is_latent=True,
              different_w=True, sft_half=True, **NARROW)
    return {"clean": gfpganv1_clean_arch.GFPGANv1Clean}[arch](**kw)


@pytest.fixture
def narrow(monkeypatch, tmp_path):
    """GFPGANer building the narrow network, and a file of it in the official layout."""
    monkeypatch.setattr(gfpganer_module, "build_reference_net", _narrow_net)
    torch.manual_seed(0)
    net = _narrow_net("clean")
    path = tmp_path / "GFPGANv1.4.pth"
    torch.save({"params_ema": net.state_dict()}, path)
    return path


@pytest.fixture(scope="module")
def photo():
    return np.ascontiguousarray(skimage.data.astronaut()[:, :, ::-1])  # BGR, as cv2.imread gives


def test_reference_script_call_shapes_and_types(narrow, photo):
    """inference_gfpgan.py / SadTalker: upscale 2, default arguments."""
    r = GFPGANer(model_path=str(narrow), upscale=2, arch="clean", channel_multiplier=2, bg_upsampler=None)
    assert isinstance(r.gfpgan, gfpganv1_clean_arch.GFPGANv1Clean) and r.device == torch.device("cpu")
    cropped, restored, img = r.enhance(photo, has_aligned=False, only_center_face=False, paste_back=True)
    assert len(cropped) == len(restored) == 1
    assert cropped[0].shape == restored[0].shape == (512, 512, 3) and restored[0].dtype == np.uint8
    assert img.shape == (1024, 1024, 3) and img.dtype == np.uint8
    assert np.abs(restored[0].astype(int) - cropped[0]).mean() > 5  # the network did something
    # away from the face the output is the Lanczos-resized input
    bg = cv2.resize(photo, (1024, 1024), interpolation=cv2.INTER_LANCZOS4)
    assert np.array_equal(img[900:], bg[900:])
    assert not np.array_equal(img[150:350, 400:600], bg[150:350, 400:600])
    # the aligned crop is BGR: its colours follow the photo's (red suit channel 2 dominant)
    assert cropped[0][..., 2].mean() > cropped[0][..., 0].mean()


def test_roop_style_string_device_upscale_1_on_a_crop_view(narrow, photo):
    """roop / facefusion 1.x: device as a string, upscale=1, enhance on a slice of the frame whose
    result is written back into the frame."""
    r = GFPGANer(model_path=str(narrow), upscale=1, device="cpu")
    frame = photo.copy()
    crop = frame[20:300, 120:400]
    assert not crop.flags["C_CONTIGUOUS"]
    _, _, out = r.enhance(crop, paste_back=True)
    assert out.shape == crop.shape and out.dtype == np.uint8
    frame[20:300, 120:400] = out
    assert np.array_equal(frame[300:], photo[300:])
    changed = (out != photo[20:300, 120:400]).any(axis=2)
    assert changed[100:160, 100:160].all() and not changed[-5:].any()  # the face, not the chest below


def test_webui_style_moves_and_clean_all(narrow, photo):
    """Older AUTOMATIC1111 webui: torch.device, .to() on the parts, clean_all(), RGB reversed with a
    negative-stride view."""
    r = GFPGANer(model_path=str(narrow), upscale=1, arch="clean", channel_multiplier=2, bg_upsampler=None,
                 device=torch.device("cpu"))
    dev = torch.device("cpu")
    r.gfpgan.to(dev)
    r.face_helper.face_det.to(dev)
    r.face_helper.face_parse.to(dev)
    rgb = np.ascontiguousarray(photo[:, :, ::-1])
    _, _, out = r.enhance(rgb[:, :, ::-1], has_aligned=False, only_center_face=False, paste_back=True)
    r.face_helper.clean_all()
    _, _, again = r.enhance(photo, has_aligned=False, only_center_face=False, paste_back=True)
    assert out.shape == photo.shape and np.array_equal(out, again)  # deterministic: fixed noise


def test_deep_live_cam_style_module_attribute_and_none_device(narrow, photo):
    r = gfpgan.GFPGANer(model_path=str(narrow), upscale=1, arch="clean", channel_multiplier=2, device=None)
    assert r.device == torch.device("cuda" if torch.cuda.is_available() else "cpu")


def test_float_upscale_and_background_upsampler_object(narrow, photo):
    """Real-ESRGAN: upscale=args.outscale (a float), bg_upsampler=RealESRGANer."""

    class Upsampler:
        calls = []

        def enhance(self, img, outscale=None):
            self.calls.append((img.shape, outscale))
            h, w = img.shape[:2]
            size = (int(w * outscale), int(h * outscale))
            return cv2.resize(img, size, interpolation=cv2.INTER_NEAREST), "RGB"

    up = Upsampler()
    r = GFPGANer(model_path=str(narrow), upscale=1.5, arch="clean", channel_multiplier=2, bg_upsampler=up)
    small = photo[:301, :451]
    _, restored, out = r.enhance(small, has_aligned=False, only_center_face=False, paste_back=True)
    assert up.calls == [((301, 451, 3), 1.5)]
    assert out.shape == (int(301 * 1.5), int(451 * 1.5), 3) == (451, 676, 3)
    ref = cv2.resize(small, (676, 451), interpolation=cv2.INTER_NEAREST)
    assert np.array_equal(out[:, 600:], ref[:, 600:]) and len(restored) == 1


def test_input_kinds_read_as_the_reference(narrow, photo):
    r = GFPGANer(model_path=str(narrow), upscale=1)
    base = r.enhance(photo)[2]
    rgba = np.concatenate([photo, np.full(photo.shape[:2] + (1,), 255, np.uint8)], 2)
    assert np.array_equal(r.enhance(rgba)[2], base)  # alpha dropped, as the reference does
    assert np.array_equal(r.enhance(photo.astype(np.uint16) * 257)[2], base)  # 16-bit
    gray = cv2.cvtColor(photo, cv2.COLOR_BGR2GRAY)
    out = r.enhance(gray)[2]
    assert out.shape == photo.shape and np.array_equal(out[450:, :, 0], out[450:, :, 2])
    with pytest.raises(UserError, match="BGR image array"):
        r.enhance(np.zeros((4, 4, 5), np.uint8))


def test_aligned_faces_weight_and_fresh_lists(narrow, photo):
    r = GFPGANer(model_path=str(narrow), upscale=2)
    face = cv2.resize(photo[60:320, 130:390], (256, 256))
    cropped, restored, img = r.enhance(face, has_aligned=True)
    assert img is None and cropped[0].shape == restored[0].shape == (512, 512, 3)
    assert np.array_equal(cropped[0], cv2.resize(face, (512, 512)))
    again = r.enhance(face, has_aligned=True, weight=0.0)
    assert np.array_equal(again[1][0], restored[0]) and again[1] is not restored  # 0..0.5: full
    assert np.array_equal(r.enhance(face, has_aligned=True, weight=1.0)[1][0], cropped[0])
    half = r.enhance(face, has_aligned=True, weight=0.75)[1][0].astype(int)
    inside = (restored[0] > 0) & (restored[0] < 255)  # the blend is on the unclipped output
    assert inside.mean() > 0.3
    assert np.abs(half - (cropped[0].astype(int) + restored[0]) / 2)[inside].max() <= 1.5
    _, _, none = r.enhance(photo, paste_back=False)
    assert none is None
    with pytest.raises(UserError, match="weight"):
        r.enhance(face, has_aligned=True, weight=2)


def test_the_whole_image_is_the_project_face_restorers(narrow, photo):
    """GFPGANer drives this project's face stages: on the same network and detector its image and
    faces are those of FaceRestorer (gfpgan.infer_image's restorer), in BGR."""
    from gfpgan.compat.archs import ReferenceFaceModel
    from gfpgan.inference.faces.pipeline import FaceRestorer, FaceStages

    r = GFPGANer(model_path=str(narrow), upscale=1)
    assert isinstance(r.stages, FaceStages) and r.stages.model.net is r.gfpgan
    cropped, restored, img = r.enhance(photo)
    fr = FaceRestorer(ReferenceFaceModel(r.gfpgan), device="cpu", detector=r.stages.detector, upscale=1,
                      min_face=0)
    res = fr.restore(cv2.cvtColor(photo, cv2.COLOR_BGR2RGB))
    assert len(res.restored_faces) == len(restored) == 1
    assert np.array_equal(cv2.cvtColor(res.cropped_faces[0], cv2.COLOR_RGB2BGR), cropped[0])
    assert np.array_equal(cv2.cvtColor(res.restored_faces[0], cv2.COLOR_RGB2BGR), restored[0])
    assert np.array_equal(cv2.cvtColor(res.restored_img, cv2.COLOR_RGB2BGR), img)
    # a network a caller puts in place of restorer.gfpgan is the one that runs
    r.gfpgan = _narrow_net("clean")
    assert r.stages.model.net is r.gfpgan and not np.array_equal(r.enhance(photo)[1][0], restored[0])


def test_no_face_returns_the_upscaled_frame_and_empty_lists(narrow):
    r = GFPGANer(model_path=str(narrow), upscale=2)
    flat = np.full((120, 90, 3), 90, np.uint8)
    cropped, restored, img = r.enhance(flat)
    assert cropped == [] and restored == [] and img.shape == (240, 180, 3) and (img == 90).all()


def test_two_threads_share_one_restorer(narrow, photo):
    r = GFPGANer(model_path=str(narrow), upscale=1)
    alone = r.enhance(photo)
    results = [None] * 4

    def work(i):
        results[i] = r.enhance(photo if i % 2 == 0 else photo[:, ::-1])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i in (0, 2):
        assert np.array_equal(results[i][2], alone[2]) and np.array_equal(results[i][1][0], alone[1][0])
    assert np.array_equal(results[1][2], results[3][2])
    assert results[0][1] is not results[2][1]


def test_forward_failure_keeps_the_crops_with_one_warning(monkeypatch, narrow, photo):
    class Failing(gfpganv1_clean_arch.GFPGANv1Clean):
        def forward(self, x, **kwargs):
            raise RuntimeError("CUDA out of memory (simulated)")

    monkeypatch.setattr(gfpganer_module, "build_reference_net",
                        lambda arch, cm=2: Failing(out_size=512, input_is_latent=True, different_w=True,
                                                   sft_half=True, fix_decoder=False, **NARROW))
    r = GFPGANer(model_path=str(narrow), upscale=1)
    with pytest.warns(RuntimeWarning, match="left unrestored") as record:
        cropped, restored, img = r.enhance(photo)
    assert len(record) == 1 and np.array_equal(cropped[0], restored[0]) and img.shape == photo.shape


def test_unknown_arch_is_one_sentence():
    # the reference leaves self.gfpgan unset and fails later with an AttributeError
    with pytest.raises(UserError, match="'CodeFormer' is not one of 'clean', 'bilinear', 'original'"):
        GFPGANer(model_path="experiments/pretrained_models/CodeFormer.pth", arch="CodeFormer")


def test_bad_files_are_one_sentence(narrow, tmp_path):
    with pytest.raises(UserError, match="model_path .*missing.pth not found"):
        GFPGANer(model_path=str(tmp_path / "missing.pth"))
    torch.save({"params_ema": {"conv.weight": torch.zeros(1)}}, tmp_path / "other.pth")
    with pytest.raises(UserError, match="does not match GFPGANv1Clean"):
        GFPGANer(model_path=str(tmp_path / "other.pth"))


def test_every_arch_name_builds_the_reference_named_class():
    from gfpgan.archs.gfpgan_bilinear_arch import GFPGANBilinear
    from gfpgan.archs.gfpganv1_arch import GFPGANv1
    from gfpgan.archs.restoreformer_arch import RestoreFormer

    with torch.device("meta"):
        built = {a: type(gfpganer_module.build_reference_net(a, 1)) for a in gfpganer_module.ARCHS}
    assert built == {"clean": gfpganv1_clean_arch.GFPGANv1Clean, "bilinear": GFPGANBilinear,
                     "original": GFPGANv1, "RestoreFormer": RestoreFormer}


@pytest.mark.gpu
def test_cuda_device_string_matches_cpu(narrow, photo):
    """roop passes device='cuda': everything moves there and the result matches the CPU's."""
    on_cpu = GFPGANer(model_path=str(narrow), upscale=1, device="cpu").enhance(photo)
    r = GFPGANer(model_path=str(narrow), upscale=1, device="cuda")
    assert next(r.gfpgan.parameters()).device.type == "cuda" and r.device.type == "cuda"
    cropped, restored, img = r.enhance(photo)
    assert len(restored) == len(on_cpu[1]) == 1 and img.shape == photo.shape
    assert np.abs(restored[0].astype(int) - on_cpu[1][0]).mean() < 2


def test_a_personal_file_applies_face_by_face(narrow, photo, tmp_path):
    """personal= (ours): the file's tensors on the loaded weights, gated as --personal is."""
    from gfpgan.checkpoint import state_dict_sha256
    from gfpgan.personal_file import GatedPersonal, save_personal, tuned_names

    net = _narrow_net("clean")
    net.load_state_dict(torch.load(narrow, weights_only=True)["params_ema"])
    base_sha = state_dict_sha256(net)
    names = tuned_names(net, "adapter")
    with torch.no_grad():
        for n in names:
            dict(net.named_parameters())[n].mul_(1.5)
    personal = tmp_path / "me.safetensors"
    save_personal(personal, net, names, base_sha, "GFPGANv1Clean", {}, "GFPGANv1.4")
    exact = dict(upscale=1, precision="fp32")  # the module that runs is gfpgan itself (its weights read back)
    plain = GFPGANer(model_path=str(narrow), **exact).enhance(photo)[1][0]
    alone = GFPGANer(model_path=str(narrow), personal=str(personal), personal_gate=0, **exact)
    assert isinstance(alone.gfpgan, gfpganv1_clean_arch.GFPGANv1Clean)
    assert state_dict_sha256(alone.gfpgan) == state_dict_sha256(net)
    tuned = alone.enhance(photo)[1][0]
    assert np.abs(tuned.astype(int) - plain).mean() > 1
    gated = GFPGANer(model_path=str(narrow), personal=str(personal), **exact)
    assert isinstance(gated.gfpgan, GatedPersonal) and state_dict_sha256(gated.gfpgan.base) == base_sha
    out = gated.enhance(photo)[1][0]
    w = float(gated.gfpgan.last_weights[0])
    # the face's weight blends the base's and the tuned output
    assert np.abs(out - (plain + w * (tuned.astype(float) - plain))).max() <= 1.5
    other = tmp_path / "other.pth"
    torch.manual_seed(5)
    torch.save({"params_ema": _narrow_net("clean").state_dict()}, other)
    with pytest.raises(UserError, match="was tuned from GFPGANv1.4"):
        GFPGANer(model_path=str(other), upscale=1, personal=str(personal))
