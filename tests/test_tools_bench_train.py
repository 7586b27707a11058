"""bench_train: modes side by side, JSON output, and the profile's per-step figures."""

import json

import pytest

from gfpgan.errors import UserError
from gfpgan.tools.bench_train import main


def test_bench_train_times_modes_and_profiles_a_step(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert main(["--modes", "fp32,bf16", "--iters", "2", "--warmup", "1", "--profile", "1",
                 "--json", str(out)]) == 0
    res = json.loads(out.read_text())["results"]
    assert set(res) == {"fp32", "bf16"}
    for r in res.values():
        assert r["it_per_s"] > 0 and r["peak_gib"] > 0 and r["profile"]["wall_ms"] > 0
    # bf16 autocast dispatches casts on top of the fp32 step's operators
    assert 1000 < res["fp32"]["profile"]["aten_ops"] < res["bf16"]["profile"]["aten_ops"]
    text = capsys.readouterr().out
    assert "--- profile of fp32 ---" in text and "| bf16 |" in text and "aten::" in text


def test_bench_train_rejects_unknown_modes():
    with pytest.raises(UserError, match=r"unknown mode\(s\) \['fp8'\]"):
        main(["--modes", "fp32,fp8"])
