"""The generator benchmark runs end to end on a tiny configuration and writes its JSON rows."""

import json

import pytest

from gfpgan.errors import UserError
from gfpgan.precision import choose_precision
from gfpgan.tools import bench_generator


def test_bench_generator_tiny_run(tmp_path, capsys):
    out = tmp_path / "bench.json"
    argv = ["--sizes", "32", "--batches", "1,2", "--modes", "fp32,auto", "--iters", "1", "--warmup", "0",
            "--narrow", "0.125", "--no-reference", "--json", str(out)]
    assert bench_generator.main(argv) == 0
    report = json.loads(out.read_text())
    rows = report["rows"]
    auto = choose_precision("auto", "cpu").name
    assert report["default"] == auto
    assert [(r["mode"], r["precision"], r["batch"]) for r in rows] == [
        ("fp32", "fp32", 1), ("fp32", "fp32", 2), ("auto", auto, 1), ("auto", auto, 2)]
    fp32, reduced = rows[:2], rows[2:]
    assert all(r["faces_per_s"] > 0 and r["max_abs"] < 1e-4 and r["psnr"] > 60 for r in fp32)
    assert fp32[0]["x_fp32_b1"] == 1.0 and all(r["x_ref_b1"] is None for r in rows)
    # bf16 where this CPU computes it natively: close to fp32, not equal to it
    assert all((40 < r["psnr"] < 70) if auto == "bf16" else r["max_abs"] < 1e-4 for r in reduced)
    printed = capsys.readouterr().out
    assert "faces/s" in printed and f"(--precision auto): {auto}" in printed


@pytest.mark.parametrize(
    "argv", [["--modes", "fp8"], ["--sizes", "48"], ["--device", "nonsense"], ["--batches", "x"]]
)
def test_bench_generator_rejects_bad_options(argv):
    with pytest.raises(UserError):
        bench_generator.main(argv + ["--no-reference"])
