"""The reference's own option files load with BasicSR's meaning and build what they describe.

``tests/reference_options/*.yml`` are, byte for byte, four files of TencentARC/GFPGAN at tag
v1.3.8 (commit 2eac2033): ``options/train_gfpgan_v1.yml``, ``options/train_gfpgan_v1_simple.yml``,
``tests/data/test_gfpgan_model.yml`` and ``tests/data/test_ffhq_degradation_dataset.yml`` (their
git blob ids are checked below). The gfpgan 1.3.8 wheel in ``.cache/oracle`` carries none of
them, so they come from the repository.

No weight is downloaded and no dataset is needed: the tests run in a temporary folder in which
the relative paths the files name exist, holding random stand-ins (the StyleGAN2 prior, the
ArcFace, VGG19 where torchvision caches it, a one-image FFHQ folder and its box file), so the files
load with no change and no override. A schema that rejects or changes a value the reference
accepts (``strict_load_g: ~`` did, see issue 25) fails these tests.
"""

import hashlib
import shutil
from pathlib import Path

import pytest
import torch
import yaml

from gfpgan.archs.vgg_arch import VGGFeatureExtractor, vgg_layer_names
from gfpgan.engine.trainer import build_dataset
from gfpgan.models import GFPGANModel
from gfpgan.options import load_train_options, load_yaml, train_schema, validate
from gfpgan.registry import ARCH_REGISTRY
from tests.helpers import CPU, make_faces, one_thread, tiny_batch  # noqa: F401  (one_thread: autouse)

REF = Path(__file__).resolve().parent / "reference_options"
BLOBS = {  # git rev-parse v1.3.8:<path> in TencentARC/GFPGAN
    "train_gfpgan_v1.yml": "aa5212a81de362daaef306e203f03cc665186d47",
    "train_gfpgan_v1_simple.yml": "3807575826a5e7ed97335f607c091c8a4039a213",
    "test_gfpgan_model.yml": "bac650ef201a383b3ae8c7f3ca3c76b2dbf9cbf1",
    "test_ffhq_degradation_dataset.yml": "df50c4bc5ca7f019cc8c47e1e39cd5709137fbee",
}
TRAIN_FILES = ["train_gfpgan_v1.yml", "train_gfpgan_v1_simple.yml"]
PRIOR = "experiments/pretrained_models/StyleGAN2_512_Cmul1_FFHQ_B12G4_scratch_800k.pth"
ARCFACE = "experiments/pretrained_models/arcface_resnet18.pth"
BOXES = "experiments/pretrained_models/FFHQ_eye_mouth_landmarks_512.pth"
# Where a value validates to something else than the file spells: BasicSR reads it through
# opt['path'].get('strict_load_g', True), i.e. None, and load_state_dict(strict=None) is non-strict.
BASICSR_READS = {("path", "strict_load_g"): False}


def _git_blob(path: Path) -> str:
    data = path.read_bytes()
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _leaves(tree, prefix=()):
    if isinstance(tree, dict) and tree:
        for k, v in tree.items():
            yield from _leaves(v, prefix + (k,))
    else:
        yield prefix, tree


def _at(tree, keys):
    for k in keys:
        tree = tree[k]
    return tree


@pytest.fixture(scope="module")
def stand_ins(tmp_path_factory):
    """A folder holding every file the reference's options name, with random weights."""
    root = tmp_path_factory.mktemp("reference_run")
    ref = load_yaml(REF / "train_gfpgan_v1.yml")
    torch.manual_seed(0)
    (root / PRIOR).parent.mkdir(parents=True)
    g = ARCH_REGISTRY.build({**ref["network_g"], "decoder_load_path": None})
    torch.save({"params_ema": g.stylegan_decoder.state_dict()}, root / PRIOR)  # the release's layout
    torch.save(ARCH_REGISTRY.build(ref["network_identity"]).state_dict(), root / ARCFACE)  # a bare dict
    # the VGG19 trunk as torchvision's vgg19-dcbb9e9d.pth names it (features.<index>.*)
    names = vgg_layer_names("vgg19")
    trunk = VGGFeatureExtractor(["conv5_4"], pretrained=False).vgg_net
    vgg = {}
    for key, value in trunk.state_dict().items():
        layer, kind = key.split(".")
        vgg[f"features.{names.index(layer)}.{kind}"] = value
    (root / "torch" / "hub" / "checkpoints").mkdir(parents=True)
    torch.save(vgg, root / "torch" / "hub" / "checkpoints" / "vgg19-dcbb9e9d.pth")
    # one 512 face for the FFHQ folder, the validation pair and the reference's test dataset
    for folder in ("datasets/ffhq/ffhq_512", "datasets/faces/validation/input",
                   "datasets/faces/validation/reference", "tests/data/gt"):
        make_faces(root / folder, n=1, size=512)
    boxes = {"left_eye": [190.0, 240.0, 20.0], "right_eye": [320.0, 240.0, 20.0],
             "mouth": [256.0, 370.0, 30.0]}
    torch.save({"00000000": boxes}, root / BOXES)
    yield {"root": root, "prior": g.stylegan_decoder.state_dict(), "arcface": torch.load(root / ARCFACE),
           "vgg": vgg}
    shutil.rmtree(root, ignore_errors=True)  # ~300 MB of random weights


@pytest.fixture
def in_run_folder(stand_ins, monkeypatch):
    monkeypatch.chdir(stand_ins["root"])
    monkeypatch.setenv("TORCH_HOME", str(stand_ins["root"] / "torch"))
    return stand_ins


def test_fixtures_are_the_reference_files():
    assert {p.name for p in REF.glob("*.yml")} == set(BLOBS)
    for name, blob in BLOBS.items():
        assert _git_blob(REF / name) == blob, f"{name} is not the reference's v1.3.8 file"


@pytest.mark.parametrize("name", TRAIN_FILES)
def test_train_files_load_unchanged_with_every_value(name, in_run_folder):
    raw = load_yaml(REF / name)
    opt = load_train_options(REF / name)  # no override: the file as the reference ships it
    assert raw["path"]["strict_load_g"] is None and raw["find_unused_parameters"] is True
    for keys, value in _leaves(raw):
        got = _at(opt, keys)
        want = BASICSR_READS.get(keys, value)
        assert got == want and type(got) in (type(want), int, float), (keys, value, got)
    assert opt["path"]["strict_load_g"] is False  # ~: non-strict, as BasicSR loads it
    assert opt["val"]["val_freq"] == 5000 and opt["logger"]["save_checkpoint_freq"] == 5000  # !!float 5e3


@pytest.mark.parametrize("name", TRAIN_FILES)
def test_train_files_build_the_model_and_datasets_they_describe(name, in_run_folder):
    opt = load_train_options(REF / name)
    full = name == "train_gfpgan_v1.yml"
    model = GFPGANModel(opt, CPU)

    # networks: the prior from decoder_load_path (frozen), the ArcFace from its bare file
    decoder = model.net_g.stylegan_decoder.state_dict()
    assert all(torch.equal(decoder[k], v) for k, v in in_run_folder["prior"].items())
    assert not any(p.requires_grad for p in model.net_g.stylegan_decoder.parameters())
    vgg = model.cri_perceptual.vgg.vgg_net.state_dict()  # from $TORCH_HOME, as torchvision caches it
    assert torch.equal(vgg["conv5_4.weight"], in_run_folder["vgg"]["features.34.weight"])
    assert set(model.nets) == ({"net_g", "net_d", "net_d_left_eye", "net_d_right_eye", "net_d_mouth"}
                               if full else {"net_g", "net_d"})
    if full:
        arcface = model.cri_identity.net.state_dict()
        assert all(torch.equal(arcface[k], v) for k, v in in_run_folder["arcface"].items())
        assert model.cri_identity.loss_weight == 10 and model.train_opt["comp_style_weight"] == 200
    else:
        assert model.cri_identity is None and not model.net_d_comp
    assert model.find_unused is True

    # optimizers as the reference builds them from blocks that spell no betas: it hard-codes
    # (0, 0.99) for G and D (D's lr and betas to the power 16/17, the lazy R1 ratio), (0.9, 0.99)
    # for the component Ds
    groups = {k: o.param_groups[0] for k, o in model.optimizers.items()}
    assert type(model.optimizers["net_g"]) is torch.optim.Adam
    assert (groups["net_g"]["lr"], groups["net_g"]["betas"]) == (2e-3, (0.0, 0.99))
    ratio = 16 / 17
    assert groups["net_d"]["lr"] == pytest.approx(2e-3 * ratio)
    assert groups["net_d"]["betas"] == pytest.approx((0.0, 0.99 ** ratio))
    for c in ("left_eye", "right_eye", "mouth") if full else ():
        assert (groups[f"net_d_{c}"]["lr"], groups[f"net_d_{c}"]["betas"]) == (2e-3, (0.9, 0.99))
    sched = model.schedulers["net_g"]
    assert sorted(sched.milestones.elements()) == [600000, 700000] and sched.gamma == 0.5
    assert all(torch.equal(a, b) for a, b in zip(model.ema.module.state_dict().values(),
                                                 model.net_g.state_dict().values()))  # EMA = net_g

    # the datasets build from their blocks (the one-image stand-ins)
    sample = build_dataset(opt["datasets"]["train"], seed=0)[0]
    assert sample["gt"].shape == sample["lq"].shape == (3, 512, 512)
    assert ("loc_left_eye" in sample) == full  # crop_components with the box file
    val = build_dataset(opt["datasets"]["val"])[0]
    assert val["gt"].shape == val["lq"].shape == (3, 512, 512)


def test_model_test_file_builds_and_steps(in_run_folder):
    def kind(obj):
        return type(obj).__name__

    raw = load_yaml(REF / "test_gfpgan_model.yml")
    # the reference's test builds GFPGANModel(opt) from the file as read, and so do we; the
    # classes it asserts, by their registered names
    model = GFPGANModel(raw, CPU)
    assert (kind(model.net_g), kind(model.net_d)) == ("GFPGANv1", "StyleGAN2Discriminator")
    assert [kind(n) for n in model.net_d_comp.values()] == ["FacialComponentDiscriminator"] * 3
    assert kind(model.cri_identity.net) == "ResNetArcFace" and model.net_g.stylegan_decoder is not None
    assert [kind(model.cri_pix), kind(model.cri_perceptual), kind(model.cri_gan), kind(model.cri_l1)] == [
        "L1Loss", "PerceptualLoss", "GANLoss", "L1Loss"]
    assert all(type(o) is torch.optim.Adam for o in model.optimizers.values())
    assert model.train_opt["net_d_reg_every"] == 1 and model.path_opt["strict_load_g"] is False
    # it also validates as a whole experiment given the two keys a run needs and it lacks
    whole = {**raw, "name": "UnitTest", "datasets": {"train": {"type": "FFHQDegradationDataset",
                                                               "dataroot_gt": "tests/data/gt"}}}
    opt = validate(whole, train_schema("GFPGANModel"), "test_gfpgan_model.yml")
    assert opt["val"]["use_pbar"] is True and opt["is_train"] is True and opt["dist"] is False

    # The reference's two steps, at 32 px instead of 512: one 512 step takes ~20 s on a CPU core.
    # (the only substitution: out_size of network_g and network_d; the eye/mouth boxes are 32 px's)
    small = yaml.safe_load((REF / "test_gfpgan_model.yml").read_text())
    small["network_g"]["out_size"] = small["network_d"]["out_size"] = 32
    torch.manual_seed(0)
    model = GFPGANModel(small, CPU)
    data = {**tiny_batch(b=1), "lq": torch.rand(1, 3, 32, 32), "gt": torch.rand(1, 3, 32, 32)}
    expected = {"l_g_pix", "l_g_percep", "l_g_style", "l_g_gan", "l_g_gan_left_eye", "l_g_gan_right_eye",
                "l_g_gan_mouth", "l_g_comp_style_loss", "l_identity", "l_d", "real_score", "fake_score",
                "l_d_r1", "l_d_left_eye", "l_d_right_eye", "l_d_mouth"}  # the reference test's keys
    logs = model.train_step(data, 1)
    assert expected <= set(logs) and {"l_p_8", "l_p_16", "l_p_32"} <= set(logs)
    logs = model.train_step(data, 100000)  # past remove_pyramid_loss: 50000
    assert expected <= set(logs) and not any(k.startswith("l_p_") for k in logs)
    assert logs["skipped"] == 0.0


@pytest.mark.parametrize("colourless", [False, True])
def test_dataset_test_file_builds(colourless, in_run_folder):
    text = (REF / "test_ffhq_degradation_dataset.yml").read_text()
    if colourless:  # the variant its own comments spell ("If you do not want colorization")
        text = text.replace("color_jitter_prob: 1", "color_jitter_prob: ~").replace(
            "color_jitter_pt_prob: 1", "color_jitter_pt_prob: ~") + "gt_gray: True\n"
    block = yaml.safe_load(text)
    schema = train_schema("GFPGANModel")
    opt = validate({"name": "n", "datasets": {"train": block}, "network_g": {"type": "GFPGANv1"},
                    "train": {"optim_g": {"type": "Adam"}, "total_iter": 1}}, schema)
    dataset = build_dataset(opt["datasets"]["train"], seed=0)
    assert len(dataset) == 1
    item = dataset[0]
    assert item["gt"].shape == item["lq"].shape == (3, 512, 512)
    assert item["gt_path"] == "tests/data/gt/00000000.png"

    def gray(t):
        return torch.equal(t[0], t[1]) and torch.equal(t[1], t[2])

    # gray_prob: 1 grays every LQ; the GT too only with gt_gray (the stand-in face has colour)
    assert gray(item["lq"]) and gray(item["gt"]) == colourless


# (override, dotted key, value it validates to): nulls BasicSR reads as "nothing" or "non-strict"
NULLS = [
    ("path.strict_load_d=~", "path.strict_load_d", False),
    ("path.strict_load_identity=~", "path.strict_load_identity", False),
    ("path.param_key_g=~", "path.param_key_g", None),
    ("path.pretrain_network_identity=~", "path.pretrain_network_identity", None),
    ("datasets.val=~", "datasets.val", None),
    ("val=~", "val", None),
    ("logger.wandb=~", "logger.wandb", None),
    ("dist_params=~", "dist_params", None),
    ("train.scheduler=~", "train.scheduler", None),
    ("train.perceptual_opt=~", "train.perceptual_opt", None),
]


@pytest.mark.parametrize("override, key, value", NULLS, ids=[n[0] for n in NULLS])
def test_nulls_load_with_basicsr_meaning(override, key, value, in_run_folder):
    opt = load_train_options(REF / "train_gfpgan_v1.yml", [override])
    assert _at(opt, key.split(".")) == value
    if key.startswith("train."):  # what the model makes of them: no schedule, no VGG loss
        model = GFPGANModel(opt, CPU)
        if key == "train.scheduler":
            assert all(s is None for s in model.schedulers.values())
        else:
            assert model.cri_perceptual is None
