"""Shared test configuration: small thread counts, the gpu marker and the reference oracle."""

import os

# One intra-op thread per process, for this process and the subprocesses the tests start (torchrun,
# CLIs): the networks in the tests are tiny, and on a 2-core machine OpenMP threads that wait on
# each other cost 10-40x more than they give whenever another process holds a core.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA GPU; this machine has none")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)
