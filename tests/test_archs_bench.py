"""The generator benchmark runs end to end on a tiny configuration and writes its JSON rows."""

import json

import pytest

from gfpgan.errors import UserError
from gfpgan.tools import bench_generator


def test_bench_generator_tiny_run(tmp_path, capsys):
    out = tmp_path / "bench.json"
    code = bench_generator.main(
        [
            "--sizes",
            "32",
            "--batches",
            "1,2",
            "--modes",
            "fp32,fp32+cl",
            "--iters",
            "1",
            "--warmup",
            "0",
            "--narrow",
            "0.125",
            "--no-reference",
            "--json",
            str(out),
        ]
    )
    assert code == 0
    rows = json.loads(out.read_text())["rows"]
    assert [(r["mode"], r["batch"]) for r in rows] == [
        ("fp32", 1),
        ("fp32", 2),
        ("fp32+cl", 1),
        ("fp32+cl", 2),
    ]
    assert all(r["faces_per_s"] > 0 and r["max_abs"] < 1e-4 and r["psnr"] > 60 for r in rows)
    assert "faces/s" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv", [["--modes", "fp8"], ["--sizes", "48"], ["--device", "nonsense"], ["--batches", "x"]]
)
def test_bench_generator_rejects_bad_options(argv):
    with pytest.raises(UserError):
        bench_generator.main(argv + ["--no-reference"])
