"""Export: EMA-only safetensors, ONNX and TorchScript match PyTorch; ONNX runs the video pipeline."""

import json

import numpy as np
import pytest
import torch

from gfpgan.checkpoint import read_config
from gfpgan.errors import UserError
from gfpgan.inference.job.segments import images
from gfpgan.tools.export import save_ema_only
from tests.helpers import TINY_GFPGAN


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    from gfpgan.archs import GFPGANv1Clean

    root = tmp_path_factory.mktemp("run")
    torch.manual_seed(0)
    ema = GFPGANv1Clean(**TINY_GFPGAN).eval()
    plain = GFPGANv1Clean(**TINY_GFPGAN).eval()  # a different (non-EMA) network: must not be picked
    (root / "models").mkdir()
    for name, net in (("net_g_ema_100", plain), ("net_g_ema_200", ema), ("net_g_200", plain)):
        save_ema_only(root / "models" / f"{name}.safetensors", net, "GFPGANv1Clean", TINY_GFPGAN, "test",
                      False)
    return root, ema


@pytest.fixture(scope="module")
def exported(run_dir, tmp_path_factory):
    from gfpgan.tools.export import main

    out = tmp_path_factory.mktemp("exp")
    assert main(["--ckpt", str(run_dir[0]), "--out", str(out)]) == 0
    return out


def _ref(net, x):
    with torch.no_grad():
        return net(x, return_rgb=False, randomize_noise=False)[0]


def test_run_folder_picks_newest_ema(run_dir):
    from gfpgan.tools.export import find_run_checkpoint

    assert find_run_checkpoint(run_dir[0]).name == "net_g_ema_200.safetensors"


def test_each_export_matches_pytorch(run_dir, exported):
    from gfpgan.inference.faces.onnx_model import OnnxFaceModel

    _, ema = run_dir
    report = json.loads((exported / "export_report.json").read_text())
    assert set(report) == {"safetensors", "onnx", "torchscript"}
    for r in report.values():
        assert r["max_abs_diff"] <= 1e-3
    x = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(7)) * 2 - 1  # a batch never traced
    ref = _ref(ema, x)
    assert ref.abs().max() > 1e-2  # the network does something
    onnx_model = OnnxFaceModel(report["onnx"]["path"])
    assert onnx_model.size == 32 and onnx_model.device == torch.device("cpu")
    assert (onnx_model(x) - ref).abs().max() <= 1e-3
    ts = torch.jit.load(report["torchscript"]["path"])
    with torch.no_grad():
        assert (ts(x) - ref).abs().max() <= 1e-3
    cfg = read_config(report["safetensors"]["path"])
    assert cfg["arch"] == "GFPGANv1Clean" and cfg["kwargs"]["out_size"] == 32 and cfg["extra"]["ema_only"]
    # fixed noise: two calls give the same output
    assert torch.equal(onnx_model(x), onnx_model(x))


def test_fp16_safetensors_halves_size_and_stays_close(run_dir, tmp_path):
    from gfpgan.networks import build_network
    from gfpgan.tools.export import export

    src = str(run_dir[0] / "models" / "net_g_ema_200.safetensors")
    report = export(src, tmp_path, ["safetensors"], fp16=True)
    path = report["safetensors"]["path"]
    assert path.endswith("_fp16.safetensors")
    from safetensors import safe_open

    with safe_open(path, "pt") as f:
        assert all(f.get_tensor(k).dtype in (torch.float16, torch.int64) for k in f.keys())
    net = build_network(path).float()
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    assert (_ref(net, x) - _ref(run_dir[1], x)).abs().max() < 5e-2


def test_bad_format_and_missing_ckpt_are_user_errors(run_dir, tmp_path):
    from gfpgan.tools.export import export, find_run_checkpoint

    with pytest.raises(UserError, match="unknown export format"):
        export(str(run_dir[0]), tmp_path, ["tflite"])
    with pytest.raises(UserError, match="net_g_ema"):
        find_run_checkpoint(tmp_path)


def test_onnx_model_restores_a_clip_through_the_video_pipeline(exported):
    import skimage.data

    from gfpgan.inference.tracks.video_restorer import VideoFaceRestorer

    path = next(exported.glob("*.onnx"))
    base = skimage.data.astronaut()[:320, 60:380]
    frames = [np.ascontiguousarray(np.roll(base, 2 * i, axis=1)) for i in range(3)]
    # a sharp face 4x the tiny model's crop: the paste itself is tested, the --keep-detail rule off
    restorer = VideoFaceRestorer(str(path), backend="onnxruntime", device="cpu", stabilize=False,
                                 keep_detail=0)
    assert type(restorer.model).__name__ == "OnnxFaceModel"
    out = images(restorer.process(iter(frames)))
    assert len(out) == 3
    for o, f in zip(out, frames):
        assert o.shape == f.shape and o.dtype == np.uint8
        changed = np.abs(o.astype(int) - f.astype(int)).max(-1) > 8
        assert 100 < changed.sum() < 0.6 * changed.size  # the face area was replaced, not the frame


def test_bench_export_reports_every_backend(run_dir, capsys):
    from gfpgan.tools.bench_export import main

    assert main(["--model", str(run_dir[0]), "--batch", "2", "--iters", "1", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line.split() for line in out.splitlines()[2:]}
    assert set(rows) == {"pytorch", "torchscript", "onnxruntime"}
    assert rows["pytorch"][3] == "1.00x"
    for r in rows.values():
        r = [v for v in r if not v.startswith("(")]  # "onnxruntime (CPU)"
        assert float(r[1]) > 0 and float(r[-1]) <= 1e-3  # faces/s, max|diff| vs PyTorch
