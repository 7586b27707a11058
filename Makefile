# The two commands of the README: `make demo` (the main job) and `make test` (the test suite).
# Both install what they need first. PYTHON may point at any interpreter (a venv's, say).
PYTHON ?= python3
ORACLE_DIR ?= .cache/oracle

.PHONY: install oracle ffmpeg app-deps test demo bench bench-gpu

install:
	@# the distribution was called gfpgan-video before it took the reference's name
	@$(PYTHON) -m pip uninstall -y -q gfpgan-video 2>/dev/null || true
	$(PYTHON) -m pip install -q -e ".[dev]"

# The reference implementation, used only by the parity tests. It is also called `gfpgan`, so it
# lives in a folder of its own and is imported only in subprocesses (see tests/oracle.py).
oracle:
	@test -f $(ORACLE_DIR)/gfpgan/__init__.py || \
	  $(PYTHON) -m pip install -q --no-deps --target $(ORACLE_DIR) gfpgan==1.3.8

# Debian's ffmpeg CLI (ffmpeg and ffprobe) makes the real-world format corpus of
# tests/test_video_formats.py and is the oracle its restored files are compared with (the project
# itself uses PyAV's libraries only). Outside CI best effort: without it those cases skip, saying
# why. Under CI=true a failed install stops the run with one sentence.
ffmpeg:
	@command -v ffmpeg >/dev/null && command -v ffprobe >/dev/null || \
	  (apt-get update -qq && apt-get install -y -qq ffmpeg) || \
	  if [ "$$CI" = true ]; then \
	    echo "error: the ffmpeg CLI could not be installed (apt-get install ffmpeg failed), and CI=true needs it for the format corpus." >&2; exit 1; \
	  else echo "ffmpeg CLI not installed: the format-corpus tests will be skipped"; fi

# The web page's extra (Gradio) and what its browser test drives: Playwright and Debian's chromium.
# Best effort outside CI (tests/test_app.py then skips, saying why); under CI=true a chromium that
# cannot be installed stops here with one sentence.
CHROMIUM ?= /usr/bin/chromium
app-deps:
	$(PYTHON) -m pip install -q -e ".[app,app-test]"
	@test -x $(CHROMIUM) || (apt-get update -qq && apt-get install -y -qq chromium) || \
	  if [ "$$CI" = "true" ]; then \
	    echo "Debian's chromium could not be installed, and the web page's browser test needs it." >&2; \
	    exit 1; \
	  else echo "chromium not installed: the web page's browser test will be skipped"; fi

test: install oracle ffmpeg app-deps
	$(PYTHON) -m ruff check .
	$(PYTHON) -m pytest -q

demo: install
	$(PYTHON) -m gfpgan.demo

bench: install oracle
	$(PYTHON) -m gfpgan.tools.bench_generator

# The GPU targets of the video and training issues, one command each (estimated 4 and 6 minutes
# on an H100-class GPU, not yet timed); figures go to results/ as JSON and to the terminal.
bench-gpu: install
	@mkdir -p results
	$(PYTHON) -m gfpgan.tools.bench_video --device cuda --model 512 --size 1280x720 --frames 240 \
	  --precision fp16 --memory --json results/bench_video_gpu.json
	$(PYTHON) -m gfpgan.tools.bench_train --opt options/train_gfpgan_v1.yml --device cuda \
	  --modes fp32,bf16_cl,bf16_cl_compile --profile 2 --json results/bench_train_gpu.json
