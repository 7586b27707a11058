"""FaceModel loading: modules, our safetensors files, fixed noise, bad model files."""

import pytest
import torch

from gfpgan.errors import UserError
from gfpgan.inference.faces.model import TorchFaceModel, load_face_model

TINY = dict(out_size=32, num_style_feat=16, channel_multiplier=0.25, narrow=0.125,
            different_w=True, sft_half=True, input_is_latent=True, fix_decoder=False)


def tiny_gfpgan(seed=0):
    import gfpgan.archs  # noqa: F401  (registers the archs)
    from gfpgan.registry import ARCH_REGISTRY

    torch.manual_seed(seed)
    net = ARCH_REGISTRY.get("GFPGANv1Clean")(**TINY)
    # StyleGAN2 noise strengths start at 0; make them matter so the noise mode is observable
    for name, p in net.named_parameters():
        if "weight" in name and p.ndim == 1 and p.numel() == 1:
            p.data.fill_(0.5)
    return net


def test_module_wraps_size_eval_and_fixed_noise():
    net = tiny_gfpgan()
    model = load_face_model(net, device="cpu", precision="fp32")  # fp32 wraps the module itself
    assert isinstance(model, TorchFaceModel)
    assert model.size == 32 and model.device == torch.device("cpu")
    assert not net.training and not any(p.requires_grad for p in net.parameters())
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    a, b = model(x), model(x)
    assert a.shape == (2, 3, 32, 32) and a.dtype == torch.float32
    assert torch.equal(a, b), "fixed noise must give identical outputs for identical inputs"
    # the same network with a fresh noise draw per call gives different skin detail
    noisy = load_face_model(net, device="cpu", precision="fp32", fixed_noise=False)
    assert (noisy(x) - noisy(x)).abs().max() > 1e-4
    # per-sample independence: a batch equals its samples run alone
    assert torch.allclose(model(x[:1]), a[:1], atol=1e-5)


def test_our_safetensors_file_loads_same_network(tmp_path):
    from gfpgan.checkpoint import save_network

    net = tiny_gfpgan(seed=3)
    path = tmp_path / "tiny.safetensors"
    save_network(path, net, "GFPGANv1Clean", TINY)
    from_file = load_face_model(str(path), device="cpu")
    direct = load_face_model(net, device="cpu")
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    assert from_file.size == 32
    assert torch.allclose(from_file(x), direct(x), atol=1e-6)


def test_wrong_input_size_is_rejected():
    model = load_face_model(tiny_gfpgan(), device="cpu")
    with pytest.raises(ValueError, match="expected"):
        model(torch.zeros(1, 3, 64, 64))


@pytest.mark.parametrize("content", [b"", b"hello, not a checkpoint", b"\x89PNG\r\n\x1a\n0000"])
def test_bad_model_file_is_one_user_error(tmp_path, content):
    path = tmp_path / "model.pth"
    path.write_bytes(content)
    with pytest.raises(UserError, match="model.pth"):
        load_face_model(str(path), device="cpu")


def test_model_that_does_not_fit_is_user_error(tmp_path):
    # a .pth whose keys are not a generator's: the loader must name the file, not crash
    path = tmp_path / "other.pth"
    torch.save({"params_ema": {"foo.weight": torch.zeros(3, 3)}}, path)
    with pytest.raises(UserError, match="other.pth"):
        load_face_model(str(path), device="cpu")


def test_unknown_backend_and_missing_cuda():
    with pytest.raises(UserError, match="backend"):
        load_face_model(torch.nn.Identity(), backend="tensorrt")
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="CUDA"):
            load_face_model(torch.nn.Identity(), device="cuda", size=32)


def test_missing_onnx_file_is_user_error(tmp_path):
    with pytest.raises(UserError, match="none.onnx"):
        load_face_model(str(tmp_path / "none.onnx"), backend="onnxruntime")


def test_onnxruntime_backend_matches_torch(tmp_path):
    import onnxruntime  # noqa: F401  (required: a broken install fails here, it does not skip)

    from gfpgan.tools.export import InferenceGraph, export_onnx

    net = tiny_gfpgan(seed=5).eval()
    path = tmp_path / "tiny.onnx"
    export_onnx(InferenceGraph(net), 32, path)
    ort_model = load_face_model(str(path), backend="onnxruntime", device="cpu")
    torch_model = load_face_model(net, device="cpu", precision="fp32")  # ONNX Runtime runs fp32
    assert ort_model.size == 32
    x = torch.rand(3, 3, 32, 32) * 2 - 1
    assert (ort_model(x) - torch_model(x)).abs().max() < 1e-3
    with pytest.raises(UserError, match="onnx"):
        load_face_model(net, backend="onnxruntime")


@pytest.mark.gpu
@pytest.mark.parametrize("half", ["fp16", "bf16"])
def test_reduced_precision_on_cuda_stays_close_to_fp32(half):
    net = tiny_gfpgan(seed=7)
    ref = load_face_model(net, device="cpu", precision="fp32")
    x = torch.rand(4, 3, 32, 32) * 2 - 1
    expected = ref(x)
    gpu = load_face_model(tiny_gfpgan(seed=7), device="cuda", precision=half)
    out = gpu(x)
    assert out.device.type == "cuda" and out.dtype == torch.float32
    assert (out.cpu() - expected).abs().mean() < 0.02
