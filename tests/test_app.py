"""The web page (gfpgan.app): uploads checked in one sentence, the commands' own argv, one job at a
time with cancellation, and the page itself driven in a real headless browser (Debian's chromium
through Playwright) with results compared byte for byte with the command lines'.

The browser tests need Gradio, Playwright (the Python package) and /usr/bin/chromium (``make
app-deps`` installs them); without them they skip saying why, or fail under ``CI=true``. The
photo test writes the README's screenshot to results/app_page.png.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest
import skimage.data

from gfpgan.app import inputs, jobs
from gfpgan.app.inputs import (
    JobSettings,
    check_uploads,
    describe_progress,
    image_command,
    parse_progress,
    personalization_argv,
    video_command,
)
from gfpgan.app.jobs import JobRunner
from gfpgan.errors import UserError
from tests.test_video_io import audio_packets, make_clip, read_video
from tests.test_video_job import ROOT, _tiny_model

CHROMIUM = os.environ.get("GFPGAN_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
JOB_TIMEOUT_MS = 240_000  # a loaded 2-core machine; each job takes 5-30 s


def _photo(path: Path, size: int = 128) -> Path:
    img = cv2.resize(skimage.data.astronaut(), (size, size), interpolation=cv2.INTER_AREA)
    cv2.imwrite(str(path), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    return path


def _one_sentence(message: str) -> bool:
    return "\n" not in message and message.endswith(".") and ". " not in message[:-1]


# ------------------------------------------------------------------ uploads, argv, progress
def test_each_bad_upload_gets_one_sentence_naming_it(tmp_path):
    photo = _photo(tmp_path / "astronaut.png")
    clip = tmp_path / "clip.mp4"
    make_clip(clip, n=3, audio=())
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 not a jpeg" * 30)
    bad_video = tmp_path / "holiday.mp4"
    bad_video.write_bytes(b"\x00\x00\x00\x18ftypmp42 truncated" * 30)
    notes = tmp_path / "notes.txt"
    notes.write_text("hello")

    ok = check_uploads([photo], 10 * 2**20)
    assert ok.kind == "images" and ok.names == ("astronaut.png",)
    assert check_uploads([clip], 10 * 2**20).kind == "video"
    cases = [([broken], "broken.jpg is not a readable photo"),
             ([bad_video], "holiday.mp4 is not a readable video"),
             ([notes], "notes.txt is neither a photo nor a video"),
             ([photo, clip], "either photos or one video"),
             ([clip, clip], "either photos or one video"),
             ([], "Nothing was uploaded")]
    for files, start in cases:
        with pytest.raises(UserError) as err:
            check_uploads(files, 10 * 2**20)
        assert start in str(err.value) and _one_sentence(str(err.value)), str(err.value)
    with pytest.raises(UserError) as err:
        check_uploads([photo], 20 * 2**10)  # the photo is ~35 kB
    assert str(err.value).startswith("astronaut.png is 35 kB, more than the 20 kB")
    assert _one_sentence(str(err.value))


def test_the_page_settings_become_the_commands_own_options():
    from gfpgan.infer_image import build_parser as image_parser
    from gfpgan.infer_video import build_parser as video_parser

    s = JobSettings(model="m.safetensors", strength=0.5, upscale=2.0, device="cpu",
                    bg_upsampler="x2.pth", temporal="t.safetensors")
    argv = image_command(Path("in"), Path("out"), s)
    assert argv == ["-m", "gfpgan.infer_image", "-i", "in", "-o", "out", "--model", "m.safetensors",
                    "--strength", "0.5", "--upscale", "2.0", "--device", "cpu", "--suffix",
                    "restored", "--bg-upsampler", "x2.pth"]
    a = image_parser().parse_args(argv[2:])  # the command's own parser reads every option
    assert (a.model, a.strength, a.upscale, a.device, a.suffix, a.bg_upsampler) == (
        "m.safetensors", 0.5, 2.0, "cpu", "restored", "x2.pth")
    argv = video_command(Path("in/My clip.MOV"), Path("out"), s)
    v = video_parser().parse_args(argv[2:])
    assert (v.input, v.output, v.side_by_side, v.temporal, v.strength, v.upscale) == (
        ["in/My clip.MOV"], "out/My clip_restored.mov", "out/My clip_side_by_side.mp4",
        "t.safetensors", 0.5, 2.0)
    assert v.codec_option == ["x264-params=mbtree=0"]  # reproducible files (see the README)
    assert video_command(Path("a.avi"), Path("o"), s)[5] == "o/a_restored.mp4"  # avi: mp4 out
    # nothing chosen: the commands' own defaults, not a copy of them
    assert JobSettings(model="m").face_argv() == ["--model", "m"]
    assert personalization_argv(None) == []
    assert personalization_argv("me.safetensors") == ["--personal", "me.safetensors"]
    personal = JobSettings(model="m", personalization="me.safetensors")
    argv = image_command(Path("in"), Path("out"), personal)
    assert argv[argv.index("--personal") + 1] == "me.safetensors"
    from gfpgan.infer_image import build_parser  # the command reads it as its own option

    assert build_parser().parse_args(argv[2:]).personal == "me.safetensors"


def test_progress_and_the_time_left_come_from_the_commands_bar():
    assert parse_progress("restore:  25%|##5       | 12/48 [00:03<00:09,  3.85frame/s]") == (12, 48)
    assert parse_progress("images: 100%|##########| 2/2 [00:01<00:00,  1.9img/s]") == (2, 2)
    assert parse_progress("note: x.png: no face found; the image is passed through") is None
    # 10 frames in 5 s since the first update: 36 left take 18 s
    assert describe_progress("frame", 12, 48, (100.0, 2), 105.0) == \
        "Frame 12 of 48 (25%), about 18 s left."
    assert describe_progress("frame", 2, 448, (100.0, 2), 100.5) == \
        "Frame 2 of 448 (0%), estimating the time left."
    assert describe_progress("frame", 12, 448, (100.0, 2), 105.0) == \
        "Frame 12 of 448 (2%), about 3 min 38 s left."


# ------------------------------------------------------------------ the job queue
FAKE_COMMAND = textwrap.dedent("""
    import os, sys, time
    inp, out, mode, pause = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
    names = sorted(os.listdir(inp))
    os.makedirs(os.path.join(out, "restored_imgs"))
    with open(os.path.join(out, "restored_imgs", ".half-written.png"), "wb") as f:
        f.write(b"partial")
    if mode == "fail":
        print("error: the model file " + os.path.join(inp, names[0]) + " is not a model; "
              "give another.", flush=True)
        sys.exit(2)
    for i, name in enumerate(names):
        sys.stderr.write(f"\\rimages: {i}/{len(names)} [00:00<00:00]"); sys.stderr.flush()
        time.sleep(pause)
        stem, ext = os.path.splitext(name)
        data = open(os.path.join(inp, name), "rb").read()
        with open(os.path.join(out, "restored_imgs", stem + "_restored" + ext), "wb") as f:
            f.write(data[::-1])
    # as tqdm and infer_image do: the note follows the bar on its line
    sys.stderr.write(f"\\rimages: {len(names)}/{len(names)} [00:00<00:00]note: " + names[-1]
                     + ": no face found; the image is passed through\\n")
""")


@pytest.fixture
def fake_runner(tmp_path, monkeypatch):
    """A runner whose image command is FAKE_COMMAND (mode and pause from the model field)."""
    def command(inputs, out, s):
        mode, pause = s.model.split(":")
        return ["-c", FAKE_COMMAND, str(inputs), str(out), mode, pause]
    monkeypatch.setattr(jobs, "image_command", command)
    runner = JobRunner(tmp_path / "private")
    yield runner
    runner.close()


def _uploads(tmp_path, *names):
    files = []
    for name in names:
        (tmp_path / "up").mkdir(exist_ok=True)
        files.append(tmp_path / "up" / name)
        files[-1].write_bytes(name.encode() * 10)
    return inputs.Uploads("images", tuple(files), tuple(names))


def test_jobs_run_one_at_a_time_and_a_cancelled_one_leaves_nothing(tmp_path, fake_runner):
    slow = fake_runner.submit(_uploads(tmp_path, "a.png", "b.png"), JobSettings(model="ok:3"))
    after = fake_runner.submit(_uploads(tmp_path, "c.png", "c.jpg"), JobSettings(model="ok:0"))
    queued = fake_runner.submit(_uploads(tmp_path, "d.png"), JobSettings(model="ok:0"))
    assert fake_runner.ahead_of(queued) == 2
    fake_runner.cancel(queued)  # cancelled while it waits: it ends now and never starts
    assert queued.finished.is_set() and queued.state == "cancelled" and not queued.folder.exists()
    assert fake_runner.ahead_of(after) == 1 and not slow.finished.is_set()
    deadline = time.time() + 30
    while slow.progress is None and time.time() < deadline:
        time.sleep(0.02)
    assert slow.state == "running" and slow.progress == (0, 2) and after.state == "queued"
    assert slow.status().startswith("Photo 0 of 2 (0%)")
    assert (slow.folder / "out" / "restored_imgs" / ".half-written.png").exists()
    fake_runner.cancel(slow)
    for job in (slow, after, queued):
        assert job.finished.wait(30)
    assert (slow.state, after.state, queued.state) == ("cancelled", "done", "cancelled")
    assert slow.status() == "Cancelled; nothing of this job was kept."
    assert not slow.folder.exists() and not queued.folder.exists() and queued.started is None
    assert after.started >= slow.ended  # one at a time, in order
    results = after.folder / "results"
    assert after.results == [results / "c_restored.png", results / "c_restored.jpg"]  # input order
    assert [p.read_bytes() for p in after.results] == [(b"c.png" * 10)[::-1], (b"c.jpg" * 10)[::-1]]
    assert [(n, b.name, a.name) for n, b, a in after.comparisons] == [
        ("c.png", "c_before.png", "c_restored.png"), ("c.jpg", "c_before.jpg", "c_restored.jpg")]
    assert sorted(p.name for p in after.folder.iterdir()) == ["results"]  # uploads' copies gone
    assert after.status().endswith("c.png: no face found; the image is passed through.")
    fake_runner.sweep(60, now=after.ended + 30)
    assert after.folder.exists()
    fake_runner.sweep(60, now=after.ended + 61)
    assert not after.folder.exists() and fake_runner.get(after.id) is None


def test_a_failed_job_says_the_commands_sentence_and_leaves_nothing(tmp_path, fake_runner):
    job = fake_runner.submit(_uploads(tmp_path, "My Photo.png"), JobSettings(model="fail:0"))
    assert job.finished.wait(30)
    assert job.state == "failed" and not job.folder.exists() and job.results == []
    assert job.status() == "The model file My Photo.png is not a model; give another."


def test_the_server_refuses_bad_options_and_blocks_this_checkout(tmp_path, monkeypatch):
    from gfpgan.app.server import _blocked, main

    with pytest.raises(UserError, match="--port 70000 is not a port"):
        main(["--port", "70000"])
    with pytest.raises(UserError, match="must be positive"):
        main(["--max-upload-mb", "0"])
    from gfpgan.app import server

    monkeypatch.setitem(sys.modules, "gradio", None)  # as if the app extra were not installed
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    made = []
    monkeypatch.setattr(server, "_private_root", lambda real=server._private_root: made.append(
        real()) or made[-1])
    monkeypatch.setenv("GRADIO_ALLOWED_PATHS", "/")
    monkeypatch.delenv("GRADIO_TEMP_DIR", raising=False)
    with pytest.raises(UserError, match=r"the web page needs Gradio; install it with pip install"):
        main(["--port", "7860"])
    assert made[0].parent == tmp_path and not made[0].exists()  # its private folder went too
    assert os.environ["GRADIO_ALLOWED_PATHS"] == "/" and "GRADIO_TEMP_DIR" not in os.environ
    assert str(ROOT) in _blocked(tmp_path / "gfpgan-app-x")
    assert str(ROOT) not in _blocked(ROOT / "inside")  # a private folder inside stays served


def test_model_files_typed_into_the_page_are_checked(tmp_path):
    from gfpgan.app.inputs import check_file_setting

    weights = tmp_path / "mine.safetensors"
    weights.write_bytes(b"weights")
    assert check_file_setting(f"  {weights} ", "model file") == str(weights)
    assert check_file_setting("  ", "model file") is None
    upload = tmp_path / "private" / "uploads" / "abc" / "evil.pth"
    upload.parent.mkdir(parents=True)
    upload.write_bytes(b"weights")
    photo = _photo(tmp_path / "me.png")
    for text, start in ((str(tmp_path / "nope.pth"), "The model file /"),
                        (str(photo), "The model file me.png is not a .safetensors"),
                        (str(upload), "The model file evil.pth is one of this page's uploads")):
        with pytest.raises(UserError) as err:
            check_file_setting(text, "model file", tmp_path / "private")
        assert str(err.value).startswith(start) and _one_sentence(str(err.value)), str(err.value)


def test_the_server_offers_the_model_it_was_given(tmp_path):
    from gfpgan.app.server import _page_config, build_parser

    weights = tmp_path / "mine.safetensors"
    weights.write_bytes(b"weights")
    cfg = _page_config(build_parser().parse_args(["--model", "GFPGANv1.4"]), 100)
    assert cfg.default_model == "GFPGANv1.4" and "GFPGANv1.4" in [v for _, v in cfg.models]
    cfg = _page_config(build_parser().parse_args(["--model", str(weights), "--device", "cpu"]),
                       100)
    assert cfg.default_model == str(weights) and cfg.models[0] == ("mine.safetensors", str(weights))
    assert cfg.device == "cpu" and cfg.max_upload_bytes == 100 and cfg.temporal is None
    with pytest.raises(UserError, match="unknown model card 'GFPGANv9'"):
        _page_config(build_parser().parse_args(["--model", "GFPGANv9"]), 100)


# ------------------------------------------------------------------ the page in a browser
def _missing(what: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{what}; run make app-deps to install it.", pytrace=False)
    pytest.skip(f"{what} (make app-deps installs it)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, url, root, proc, log):
        self.url, self.root, self.proc, self.log = url, root, proc, log


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("inputs")
    photos = d / "photos"
    photos.mkdir()
    _photo(photos / "astronaut.png")
    wall = np.tile(np.linspace(40, 220, 96, dtype=np.uint8)[None, :, None], (64, 1, 3))
    cv2.imwrite(str(photos / "wall.jpg"), wall)  # no face: passed through, with a note
    make_clip(d / "clip.mp4", n=8)  # with audio
    make_clip(d / "long.mp4", n=1500, audio=())  # never finishes: cancelled
    (d / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg at all" * 20)
    rng = np.random.default_rng(0)
    cv2.imwrite(str(d / "big.png"), rng.integers(0, 255, (800, 800, 3), dtype=np.uint8))
    return {"dir": d, "model": _tiny_model(d / "tiny.safetensors")}


@pytest.fixture(scope="module")
def browser_tools():
    """Gradio, Playwright and Debian's chromium, or a skip (a failure under CI=true) saying which
    is missing, before any server starts."""
    try:
        import gradio  # noqa: F401
    except ImportError:
        _missing("Gradio is not installed")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("Playwright (the Python package) is not installed")
    if not os.access(CHROMIUM, os.X_OK):
        _missing(f"Debian's chromium is not installed at {CHROMIUM}")
    return sync_playwright


@pytest.fixture(scope="module")
def server(browser_tools, tmp_path_factory, files):
    base = tmp_path_factory.mktemp("server")
    private = base / "tmp"
    private.mkdir()
    port = _free_port()
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT), TMPDIR=str(private))
    log = base / "server.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "gfpgan.app", "--port", str(port),
                                 "--model", str(files["model"]), "--device", "cpu",
                                 "--max-upload-mb", "1"],
                                env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 180
    while True:
        try:
            with urllib.request.urlopen(url + "/", timeout=5) as r:
                if r.status == 200:
                    break
        except OSError:
            pass
        if proc.poll() is not None or time.time() > deadline:
            proc.kill()
            pytest.fail(f"the server did not start:\n{log.read_text()[-2000:]}")
        time.sleep(0.5)
    [root] = private.glob("gfpgan-app-*")
    assert root.stat().st_mode & 0o777 == 0o700  # private
    yield Server(url, root, proc, log)
    if proc.poll() is None:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="module")
def page(server, browser_tools):
    with browser_tools() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS, headless=True)
        context = browser.new_context(accept_downloads=True,
                                      viewport={"width": 1280, "height": 900})
        pg = context.new_page()
        pg.set_default_timeout(60_000)
        pg.goto(server.url + "/")
        pg.wait_for_selector("#restore")
        yield pg
        browser.close()


def _upload(page, *paths):
    if page.locator("#uploads .file-preview").count():  # files from the step before
        page.locator("#uploads button[aria-label='Clear']").click()
        _wait_status(page, start="Upload photos")
    page.locator("#uploads input[type=file]").set_input_files([str(p) for p in paths])


def _status(page):
    return page.evaluate("""() => { const s = document.querySelector('#status .gfpgan-status');
        return s ? [s.dataset.kind, s.querySelector('.gfpgan-message').textContent] : [null, ''];
    }""")


def _wait_status(page, kind=None, start="", timeout=60_000):
    page.wait_for_function("""([kind, start]) => {
        const s = document.querySelector('#status .gfpgan-status');
        return s && (!kind || s.dataset.kind === kind) &&
               s.querySelector('.gfpgan-message').textContent.startsWith(start); }""",
                           arg=[kind, start], timeout=timeout)
    return _status(page)[1]


def _set_strength(page, value: str) -> None:
    box = page.locator("#strength input[type=number]")
    box.fill(value)
    box.press("Enter")


def _downloads(page, folder: Path):
    folder.mkdir(parents=True, exist_ok=True)
    links = page.locator("#downloads a[download]")
    saved = {}
    for i in range(links.count()):
        with page.expect_download() as info:
            links.nth(i).click()
        d = info.value
        d.save_as(folder / d.suggested_filename)
        saved[d.suggested_filename] = folder / d.suggested_filename
    return saved


def _job_folders(server):
    jobs_dir = server.root / "jobs"
    return set(jobs_dir.iterdir()) if jobs_dir.exists() else set()


def test_a_corrupt_or_too_large_upload_gets_one_sentence_in_the_page(page, server, files):
    _upload(page, files["dir"] / "broken.jpg")
    message = _wait_status(page, kind="error")
    assert message == ("broken.jpg is not a readable photo (damaged, truncated or not really an "
                       "image); upload another file.")
    page.click("#restore")  # pressing Restore anyway: the same sentence, no job
    page.wait_for_timeout(500)
    assert _status(page) == ["error", message] and _job_folders(server) == set()
    _upload(page, files["dir"] / "big.png")  # 1.9 MB, over --max-upload-mb 1: refused on upload
    toast = page.get_by_text(re.compile(r"exceed the maximum allowed size of 1\.0 ?Mb"))
    toast.wait_for()
    assert "big.png" in toast.inner_text()
    assert not list((server.root / "uploads").rglob("big.png"))
    body = (b"--x\r\nContent-Disposition: form-data; name=\"files\"; filename=\"big.png\"\r\n"
            b"Content-Type: image/png\r\n\r\n" + b"0" * (2 * 2**20) + b"\r\n--x--\r\n")
    r = page.request.post(server.url + "/gradio_api/upload",
                          headers={"Content-Type": "multipart/form-data; boundary=x"}, data=body)
    assert r.status == 413 and not list((server.root / "uploads").rglob("big.png"))


def test_photos_restored_in_the_page_are_the_commands_bytes(page, server, files, tmp_path):
    from gfpgan.infer_image import main as infer_image

    photos = files["dir"] / "photos"
    _upload(page, photos / "astronaut.png", photos / "wall.jpg")
    assert _wait_status(page, start="Ready") == ("Ready: 2 photo(s). Choose the settings and press "
                                                 "Restore.")
    _set_strength(page, "0.5")
    page.click("#restore")
    done = _wait_status(page, kind="done", timeout=JOB_TIMEOUT_MS)
    assert re.fullmatch(r"Done: 2 photo\(s\) restored in \d+ s\. wall\.jpg: no face found; the "
                        r"image is passed through\.", done), done
    shown = page.locator("#command textarea").input_value()
    assert "--strength 0.5" in shown and shown.startswith("python -m gfpgan.infer_image -i photos")
    got = _downloads(page, tmp_path / "downloaded")
    assert sorted(got) == ["astronaut_restored.png", "wall_restored.jpg"]
    # the command line with the same settings, written by hand here
    assert infer_image(["-i", str(photos), "-o", str(tmp_path / "cli"), "--model",
                        str(files["model"]), "--strength", "0.5", "--device", "cpu",
                        "--suffix", "restored"]) == 0
    for name, path in got.items():
        assert path.read_bytes() == (tmp_path / "cli" / "restored_imgs" / name).read_bytes(), name
    before = cv2.imread(str(photos / "astronaut.png"))
    after = cv2.imread(str(got["astronaut_restored.png"]))
    assert np.abs(before.astype(int) - after.astype(int)).mean() > 1  # the face was replaced
    slider = page.locator("#compare img")
    assert slider.count() == 2  # before and after
    assert page.locator("#pick").is_visible()  # two photos: which one to compare
    (ROOT / "results").mkdir(exist_ok=True)
    page.screenshot(path=str(ROOT / "results" / "app_page.png"), full_page=True)
    first = [img.get_attribute("src") for img in slider.all()]
    page.locator("#pick input").click()
    page.get_by_role("option", name="wall.jpg").click()
    page.wait_for_function("""(first) => { const s = [...document.querySelectorAll('#compare img')]
        .map(i => i.getAttribute('src')); return s.length == 2 && s[1] != first[1]; }""", arg=first)


def test_a_video_restored_in_the_page_is_the_commands_video(page, server, files, tmp_path):
    from gfpgan.infer_video import main as infer_video

    clip = files["dir"] / "clip.mp4"
    _upload(page, clip)
    assert _wait_status(page, start="Ready") == "Ready: clip.mp4. Choose the settings and press Restore."
    _set_strength(page, "0.5")
    page.click("#restore")
    assert re.fullmatch(r"Done: clip\.mp4 restored in \d+ s\.",
                        _wait_status(page, kind="done", timeout=JOB_TIMEOUT_MS))
    shown = page.locator("#command textarea").input_value()
    assert shown.startswith("python -m gfpgan.infer_video -i clip.mp4 -o results/clip_restored.mp4")
    assert "--strength 0.5" in shown and "x264-params=mbtree=0" in shown
    got = _downloads(page, tmp_path / "downloaded")
    assert sorted(got) == ["clip_restored.mp4", "clip_side_by_side.mp4"]
    page.wait_for_function("""() => { const v = document.querySelector('#preview video');
        return v && v.readyState >= 2 && v.videoWidth == 320; }""")  # the browser plays it
    ref, side = tmp_path / "cli" / "clip_restored.mp4", tmp_path / "cli" / "clip_side_by_side.mp4"
    assert infer_video(["-i", str(clip), "-o", str(ref), "--model", str(files["model"]),
                        "--strength", "0.5", "--device", "cpu", "--side-by-side", str(side),
                        "--codec-option", "x264-params=mbtree=0", "--no-progress"]) == 0
    assert got["clip_restored.mp4"].read_bytes() == ref.read_bytes()
    assert got["clip_side_by_side.mp4"].read_bytes() == side.read_bytes()
    pts, tb, frames, _ = read_video(got["clip_restored.mp4"])
    src_pts, src_tb, _, _ = read_video(clip)
    assert [p * tb for p in pts] == [p * src_tb for p in src_pts]  # timing kept
    assert audio_packets(got["clip_restored.mp4"]) == audio_packets(clip)  # audio kept
    assert read_video(got["clip_side_by_side.mp4"])[2][0].shape[1] == 2 * 160


def _children(pid: int):
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            found += (task / "children").read_text().split()
        except OSError:
            pass
    return found


def test_jobs_queue_one_at_a_time_show_frames_and_time_left_and_cancel_to_nothing(
        page, server, files):
    before = _job_folders(server)
    _upload(page, files["dir"] / "long.mp4")
    _wait_status(page, start="Ready")
    page.click("#restore")
    page.wait_for_function("""() => /^Frame \\d+ of 1500 \\(\\d+%\\), about .+ left\\.$/.test(
        document.querySelector('#status .gfpgan-message').textContent)""", timeout=JOB_TIMEOUT_MS)
    [running] = _job_folders(server) - before
    assert len(_children(server.proc.pid)) == 1  # the command is running
    other = page.context.browser.new_context().new_page()  # a second visitor, meanwhile
    try:
        other.goto(server.url + "/")
        other.wait_for_selector("#restore")
        _upload(other, files["dir"] / "clip.mp4")
        _wait_status(other, start="Ready")
        other.click("#restore")
        assert _wait_status(other, start="Waiting") == ("Waiting: another job is running; this "
                                                        "one starts when it ends.")
        [waiting] = _job_folders(server) - before - {running}
        other.click("#cancel")  # cancelled while it waits: it never starts
        assert _wait_status(other, start="Cancelled") == "Cancelled; nothing of this job was kept."
        assert not waiting.exists() and len(_children(server.proc.pid)) == 1
        assert page.locator("#status .gfpgan-message").inner_text().startswith("Frame ")
    finally:
        other.context.close()
    page.click("#cancel")  # cancelled while it runs: its process ends, its files go
    assert _wait_status(page, start="Cancelled") == "Cancelled; nothing of this job was kept."
    assert page.locator("#downloads a[download]").count() == 0
    assert not running.exists() and _job_folders(server) == before
    assert not list(server.root.rglob("long_*"))  # no half-written video anywhere
    deadline = time.time() + 10
    while _children(server.proc.pid) and time.time() < deadline:
        time.sleep(0.1)
    assert _children(server.proc.pid) == []


def test_nothing_but_the_pages_results_can_be_fetched(page, server, files):
    inside = server.root / "jobs" / "probe" / "results" / "secret.png"  # where jobs keep results
    inside.parent.mkdir(parents=True)
    shutil.copyfile(files["dir"] / "photos" / "astronaut.png", inside)
    outside = [Path("/etc/passwd"), ROOT / "README.md", files["model"], server.log, inside,
               server.root / "uploads" / ".." / ".." / ".." / "etc" / "passwd",
               "README.md", "gfpgan/__init__.py"]  # relative: from the server's folder
    for path in outside:
        for prefix in ("/gradio_api/file=", "/file="):
            r = page.request.get(server.url + prefix + str(path))
            assert r.status in (403, 404), (prefix, path, r.status)
            assert b"root:" not in r.body() and b"GFPGAN" not in r.body()
    traversal = "/gradio_api/file=" + str(server.root / "uploads") + "%2F..%2F..%2F..%2Fetc%2Fpasswd"
    assert page.request.get(server.url + traversal).status in (403, 404)
    proxy = page.request.get(f"{server.url}/gradio_api/file={server.url}/")  # no fetching URLs
    assert proxy.status == 403
    shutil.rmtree(inside.parent.parent)
    # what Gradio itself holds in the private folder is served: the control that the refusals
    # above are about the paths, not a server that refuses everything
    body = (b"--x\r\nContent-Disposition: form-data; name=\"files\"; filename=\"mine.png\"\r\n"
            b"Content-Type: image/png\r\n\r\n" + inside.name.encode() * 10 + b"\r\n--x--\r\n")
    r = page.request.post(server.url + "/gradio_api/upload",
                          headers={"Content-Type": "multipart/form-data; boundary=x"}, data=body)
    [kept] = r.json()
    assert Path(kept).parent.parent == server.root / "uploads"
    r = page.request.get(server.url + "/gradio_api/file=" + kept)
    assert r.status == 200 and r.body() == b"secret.png" * 10


def test_stopping_the_server_removes_every_upload_and_result(server):
    assert (server.root / "uploads").exists()
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(timeout=60) == 0
    assert not server.root.exists()
