"""Options: the declarative schema, YAML loading, overrides, did-you-mean, run info, recipes."""

import math
from pathlib import Path

import pytest
import yaml

from gfpgan.engine.run_info import write_run_info
from gfpgan.errors import UserError
from gfpgan.options import (
    Block,
    Field,
    ListOf,
    MapOf,
    Section,
    apply_overrides,
    check_blocks,
    load_train_options,
    load_yaml,
    train_schema,
    validate,
)

TRAIN_SCHEMA = train_schema("GFPGANModel")

REPO = Path(__file__).resolve().parents[1]

SCHEMA = Section({
    "name": Field(str, required=True, nullable=False),
    "lr": Field(float, default=1e-3, min=0.0),
    "iters": Field(int, default=10, min=1, max=100),
    "mode": Field(str, default="a", choices=["a", "b"]),
    "sizes": ListOf(int, length=2, default=None),
    "sub": Section({"flag": Field(bool, default=False), "path": Field(str, default=None, path="dir")}),
    "net": Block("arch"),
    "metrics": MapOf(Section({"type": Field(str, required=True)})),
})


def test_defaults_filled_and_types_coerced():
    out = validate({"name": "x", "lr": 1, "iters": "5e1", "sizes": [1, 2.0]}, SCHEMA, "f.yml")
    assert out == {"name": "x", "lr": 1.0, "iters": 50, "mode": "a", "sizes": [1, 2],
                   "sub": {"flag": False, "path": None}, "net": None, "metrics": {}}
    assert isinstance(out["lr"], float) and isinstance(out["iters"], int)


@pytest.mark.parametrize("cfg, message", [
    ({"name": "x", "lrr": 1}, "unknown option 'lrr' in f.yml; did you mean 'lr'?"),
    ({"name": "x", "sub": {"flgg": True}}, "unknown option 'sub.flgg' in f.yml; did you mean 'flag'?"),
    ({"name": "x", "zzz": 1}, "unknown option 'zzz' in f.yml (known: "),
    ({"name": "x", "iters": 2.5}, "option 'iters' in f.yml must be an integer, got 2.5"),
    ({"name": "x", "iters": True}, "option 'iters' in f.yml must be an integer, got true;"),
    ({"name": "x", "iters": 0}, "is 0 but must be >= 1"),
    ({"name": "x", "iters": 101}, "is 101 but must be <= 100"),
    ({"name": "x", "mode": "c"}, "is 'c' but must be one of 'a', 'b'"),
    ({"name": "x", "sub": {"flag": "yes"}}, "must be true or false"),
    ({"name": "x", "sizes": [1]}, "must have 2 items"),
    ({"name": "x", "sub": {"path": "/no/such/dir"}}, "names the folder '/no/such/dir', which does not exist"),
    ({"lr": 1}, "option 'name' is required but missing in f.yml"),
    ({"name": None}, "option 'name' in f.yml must not be empty"),
    ({"name": "x", "net": {"channels": 3}}, "option 'net.type' is required"),
    ({"name": "x", "metrics": {"psnr": {}}}, "option 'metrics.psnr.type' is required"),
])
def test_errors_name_option_file_and_fix(cfg, message):
    with pytest.raises(UserError) as exc:
        validate(cfg, SCHEMA, "f.yml")
    assert message in str(exc.value)


def test_free_blocks_keep_kwargs_and_read_yaml11_floats():
    out = validate({"name": "x", "net": {"type": "T", "lr": "2e-3", "ks": ["1e-1", 2]}}, SCHEMA, "f")
    assert out["net"] == {"type": "T", "lr": 0.002, "ks": [0.1, 2]}


def test_overrides_parse_yaml_scalars_and_create_sections():
    cfg = {"name": "x", "sub": {"flag": False}}
    keys = apply_overrides(cfg, ["iters=20", "sub.flag=true", "sizes=[3, 4]", "net.type=Foo",
                                 "mode=~"])
    assert keys == ["iters", "sub.flag", "sizes", "net.type", "mode"]
    assert cfg["iters"] == 20 and cfg["sub"]["flag"] is True and cfg["sizes"] == [3, 4]
    assert cfg["net"] == {"type": "Foo"} and cfg["mode"] is None
    with pytest.raises(UserError, match="key.subkey=value"):
        apply_overrides(cfg, ["iters"])
    with pytest.raises(UserError) as exc:
        validate({"name": "x", "itres": 3}, SCHEMA, "f.yml", overridden=["itres"])
    assert "command-line overrides" in str(exc.value) and "'iters'" in str(exc.value)


def test_load_yaml_errors(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load_yaml(tmp_path / "none.yml")
    bad = tmp_path / "bad.yml"
    bad.write_text("a: 1\nb: [1, 2\nc: 3\n")
    with pytest.raises(UserError, match=r"not valid YAML at line \d+"):
        load_yaml(bad)
    lst = tmp_path / "list.yml"
    lst.write_text("- 1\n- 2\n")
    with pytest.raises(UserError, match="mapping"):
        load_yaml(lst)
    unsafe = tmp_path / "unsafe.yml"
    unsafe.write_text("a: !!python/object/apply:os.system ['true']\n")
    with pytest.raises(UserError):  # safe_load refuses python tags
        load_yaml(unsafe)


def test_check_blocks_against_registered_signatures(tmp_path):
    schema = Section({"net": Block("arch", required=True, nullable=False)})
    opt = validate({"net": {"type": "StyleGAN2Discriminator", "out_size": 32, "narow": 0.5}}, schema)
    with pytest.raises(UserError) as exc:
        check_blocks(opt, schema, "f.yml")
    assert "unknown option 'net.narow' in f.yml" in str(exc.value) and "'narrow'" in str(exc.value)
    opt = validate({"net": {"type": "StyleGAN2Discrimnator", "out_size": 32}}, schema)
    with pytest.raises(UserError, match="did you mean 'StyleGAN2Discriminator'"):
        check_blocks(opt, schema, "f.yml")
    opt = validate({"net": {"type": "StyleGAN2Discriminator", "out_size": 32, "narrow": 0.5}}, schema)
    check_blocks(opt, schema, "f.yml")  # valid: no error


def test_train_schema_defaults_match_the_reference():
    opt = validate({"name": "n", "datasets": {"train": {"type": "X"}}, "network_g": {"type": "G"},
                    "train": {"optim_g": {"type": "Adam"}, "total_iter": 5}}, TRAIN_SCHEMA)
    assert math.isclose(opt["train"]["ema_decay"], 0.5 ** (32 / 10000))
    assert opt["train"]["net_d_reg_every"] == 16 and opt["train"]["r1_reg_weight"] == 10
    assert opt["path"]["param_key_g"] == "params_ema" and opt["val"] is None
    assert opt["datasets"]["train"]["batch_size_per_gpu"] == 1 and opt["model_type"] == "GFPGANModel"


def test_choice_errors_spell_values_as_yaml():
    def train(**keys):
        return validate({"name": "n", "datasets": {"train": {"type": "X"}}, "network_g": {"type": "G"},
                         "train": {"optim_g": {"type": "Adam"}, "total_iter": 5, **keys}}, TRAIN_SCHEMA)

    with pytest.raises(UserError) as err:
        train(compile="fast")
    assert "is 'fast' but must be one of false, true, 'default', 'reduce-overhead'" in str(err.value)
    with pytest.raises(UserError, match="is 'f32' but must be one of ~, 'bf16', 'fp16'$"):
        train(amp="f32")


@pytest.mark.parametrize("recipe", ["train_gfpgan_v1.yml", "train_gfpgan_v1_simple.yml",
                                    "train_gfpgan_tiny.yml"])
def test_recipes_validate_when_their_files_exist(recipe, tmp_path):
    raw = load_yaml(REPO / "options" / recipe)
    opt = validate(raw, TRAIN_SCHEMA, recipe, check_paths=False)  # schema-valid as shipped
    check_blocks(opt, TRAIN_SCHEMA, recipe, check_paths=False)  # every kwarg known to its class
    # with its data/weight files missing, loading names the first missing one
    with pytest.raises(UserError, match="which does not exist|does not exist"):
        load_train_options(REPO / "options" / recipe)


def test_tiny_recipe_loads_with_a_data_folder(tmp_path):
    faces = tmp_path / "faces"
    faces.mkdir()
    opt = load_train_options(REPO / "options" / "train_gfpgan_tiny.yml",
                             [f"datasets.train.dataroot_gt={faces}", "train.total_iter=3"])
    assert opt["train"]["total_iter"] == 3 and opt["datasets"]["train"]["dataroot_gt"] == str(faces)
    assert opt["network_g"] == load_yaml(REPO / "options" / "train_gfpgan_tiny.yml")["network_g"]


def test_write_run_info(tmp_path):
    opt = {"name": "x", "train": {"lr": 0.1}}
    info = write_run_info(tmp_path / "run", opt, ["python", "-m", "gfpgan.train", "-opt", "a b.yml"])
    assert yaml.safe_load((tmp_path / "run" / "options.yml").read_text()) == opt
    assert (tmp_path / "run" / "command.txt").read_text() == "python -m gfpgan.train -opt 'a b.yml'\n"
    sha = (tmp_path / "run" / "git_commit.txt").read_text().strip()
    assert sha == info["commit"] and (len(sha) == 40 or sha == "unknown")
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(UserError, match="cannot write the run folder"):
        write_run_info(blocker / "run", opt, [])


def test_a_null_can_mean_a_value():
    # BasicSR reads strict_load_g: ~ as a non-strict load; an absent key keeps the default (strict)
    schema = Section({"strict": Field(bool, default=True, null=False), "plain": Field(bool, default=True)})
    assert validate({"strict": None, "plain": None}, schema) == {"strict": False, "plain": None}
    assert validate({}, schema) == {"strict": True, "plain": True}
    assert validate({"strict": True}, schema)["strict"] is True
    with pytest.raises(UserError, match="must be true or false"):
        validate({"strict": "no"}, schema)
    path = TRAIN_SCHEMA.fields["path"].fields
    assert all(path[k].null is False for k in ("strict_load_g", "strict_load_d", "strict_load_identity"))
