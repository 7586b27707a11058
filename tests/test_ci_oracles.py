"""Under ``CI=true`` a missing oracle fails the run in one sentence; outside CI it skips, saying why.

Checked on the two places that decide it: the ``ffmpeg`` target of the Makefile (run with a PATH
where neither ffmpeg nor a working apt-get exists) and the conftest hook that turns skips into
failures under CI (run on a throw-away test folder that carries this project's conftest).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("ci", [True, False])
def test_make_ffmpeg_fails_under_ci_when_it_cannot_install(tmp_path, ci):
    make = shutil.which("make")
    if make is None:  # make is how CI runs the suite: it is there whenever CI is
        pytest.skip("make is not installed")
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "apt-get").write_text("#!/bin/sh\nexit 1\n")
    (fake / "apt-get").chmod(0o755)
    env = {"PATH": str(fake), **({"CI": "true"} if ci else {})}
    r = subprocess.run([make, "-s", "-C", str(ROOT), "ffmpeg"], env=env, capture_output=True,
                       text=True, timeout=60)
    if ci:
        assert r.returncode != 0
        err = [line for line in r.stderr.splitlines() if not line.startswith("make")]
        assert err == ["error: the ffmpeg CLI could not be installed (apt-get install ffmpeg "
                       "failed), and CI=true needs it for the format corpus."]
    else:
        assert r.returncode == 0, r.stderr
        assert "the format-corpus tests will be skipped" in r.stdout


SAMPLE = '''
import pytest

def test_needs_an_oracle():
    pytest.skip("the ffmpeg CLI is not installed")

def test_needs_a_module():
    pytest.importorskip("a_module_that_is_not_there_12345")

@pytest.mark.gpu
def test_needs_a_gpu():
    pass

def test_runs():
    assert True
'''


@pytest.mark.parametrize("ci", [True, False])
def test_skips_fail_under_ci_except_gpu_tests(tmp_path, ci):
    (tmp_path / "tests").mkdir()
    shutil.copy(ROOT / "tests" / "conftest.py", tmp_path / "tests" / "conftest.py")
    (tmp_path / "tests" / "test_sample.py").write_text(SAMPLE)
    (tmp_path / "pytest.ini").write_text("[pytest]\nmarkers =\n    gpu: needs a GPU\n")
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    if ci:
        env["CI"] = "true"
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rA", "-p", "no:cacheprovider",
                        "tests"], cwd=tmp_path, env=env, capture_output=True, text=True,
                       timeout=300)
    out = r.stdout
    gpu_skips = 0 if torch.cuda.is_available() else 1
    if ci:
        assert r.returncode == 1, out
        assert "FAILED tests/test_sample.py::test_needs_an_oracle - under CI=true this test must " \
               "run, not skip: the ffmpeg CLI is not installed" in out
        assert "FAILED tests/test_sample.py::test_needs_a_module - under CI=true" in out and \
            "a_module_that_is_not_there_12345" in out
        summary = f"2 failed, {2 - gpu_skips} passed" + (", 1 skipped" if gpu_skips else "")
    else:
        assert r.returncode == 0, out
        assert "SKIPPED" in out and "the ffmpeg CLI is not installed" in out
        summary = f"{2 - gpu_skips} passed, {2 + gpu_skips} skipped"
    assert summary in out.splitlines()[-1], out


@pytest.mark.parametrize("ci", [True, False])
def test_format_corpus_without_ffmpeg_fails_under_ci_and_skips_elsewhere(tmp_path, ci):
    """The corpus with neither ffmpeg nor ffprobe on the PATH (only this Python is)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python").symlink_to(sys.executable)
    env = {"PATH": str(bin_dir), "PYTHONPATH": str(ROOT), "HOME": os.environ.get("HOME", "/"),
           **({"CI": "true"} if ci else {})}
    case = "tests/test_video_formats.py::test_corpus_input_frames_are_ffmpegs_frames[h264_aac.mp4]"
    r = subprocess.run([str(bin_dir / "python"), "-m", "pytest", "-q", "-rA", "-p",
                        "no:cacheprovider", case], cwd=ROOT, env=env, capture_output=True,
                       text=True, timeout=300)
    sentence = ("the ffmpeg and ffprobe CLIs are not installed (`make ffmpeg` installs Debian's "
                "ffmpeg); the format corpus needs it as its oracle.")
    assert sentence in r.stdout, r.stdout[-2000:]
    if ci:
        assert r.returncode != 0 and "1 error" in r.stdout.splitlines()[-1]
    else:
        assert r.returncode == 0 and "1 skipped" in r.stdout.splitlines()[-1]
