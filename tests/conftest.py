"""Shared test configuration: small thread counts, the gpu marker and the reference oracle.

Under ``CI=true`` nothing skips except the GPU tests on a machine without one: a missing oracle
(the reference package, the ffmpeg/ffprobe CLI) or a dependency that does not import is a failure
there, in one sentence; outside CI such a test skips with its reason.
"""

import os

# One intra-op thread per process, for this process and the subprocesses the tests start (torchrun,
# CLIs): the networks in the tests are tiny, and on a 2-core machine OpenMP threads that wait on
# each other cost 10-40x more than they give whenever another process holds a core.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))

CI = os.environ.get("CI", "").lower() == "true"
GPU_REASON = "needs a CUDA GPU; this machine has none"


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason=GPU_REASON)
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Under CI=true a skip (other than a GPU test's without a GPU) is reported as a failure."""
    outcome = yield
    rep = outcome.get_result()
    if not CI or not rep.skipped or hasattr(rep, "wasxfail"):
        return
    reason = rep.longrepr[2] if isinstance(rep.longrepr, tuple) else str(rep.longrepr)
    if "gpu" in item.keywords and GPU_REASON in reason:
        return
    rep.outcome = "failed"
    rep.longrepr = f"under CI=true this test must run, not skip: {reason.removeprefix('Skipped: ')}"
