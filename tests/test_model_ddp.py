"""GFPGANModel under DDP (2 CPU processes, gloo): lazy R1 through the D wrapper, the pyramid
switch (generator re-wrapped without find_unused_parameters), identical weights on every rank,
rank-averaged logs, and a non-finite loss on one rank skipping the update on all ranks."""

import json
import os
import socket

import pytest
import torch
import torch.multiprocessing as mp


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, out_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    import torch.distributed as dist

    from gfpgan.dist import init_dist
    from gfpgan.models import GFPGANModel
    from tests.helpers import tiny_batch, tiny_opt

    info = init_dist("cpu")
    torch.manual_seed(0)  # same initial weights (DDP would broadcast rank 0's anyway)
    model = GFPGANModel(tiny_opt(identity=False, perceptual=False, reg_every=2, remove_pyramid=1), info)
    torch.manual_seed(100 + rank)
    result = {"logs": []}
    for it in (1, 2):  # it 1: pyramid on; it 2: pyramid off (re-wrap) + lazy R1
        result["logs"].append(model.train_step(tiny_batch(seed=10 * it + rank), it))
    bad = tiny_batch(seed=99)
    if rank == 1:
        bad["gt"][0, 0, 0, 0] = float("inf")
    before = {k: torch.cat([p.detach().flatten() for p in n.parameters()])
              for k, n in model.trainable_nets().items()}
    result["logs"].append(model.train_step(bad, 3))
    result["unchanged_after_skip"] = all(
        torch.equal(before[k], torch.cat([p.detach().flatten() for p in n.parameters()]))
        for k, n in model.trainable_nets().items())
    result["same_as_rank0"] = {}
    for k, net in list(model.trainable_nets().items()) + [("ema", model.ema.module)]:
        flat = torch.cat([p.detach().flatten() for p in net.parameters()])
        ref = flat.clone()
        dist.broadcast(ref, 0)
        result["same_as_rank0"][k] = bool(torch.equal(flat, ref))
    with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as f:
        json.dump(result, f)
    dist.destroy_process_group()


@pytest.mark.slow
def test_ddp_two_ranks_pyramid_switch_r1_and_skip(tmp_path):
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    assert all(r0["same_as_rank0"].values()) and all(r1["same_as_rank0"].values()), r1["same_as_rank0"]
    first, second, third = r0["logs"]
    assert "l_p_32" in first and "l_d_r1" not in first
    assert not any(k.startswith("l_p_") for k in second) and second["l_d_r1"] > 0
    assert first["skipped"] == second["skipped"] == 0.0
    # Logs are rank averages: both ranks report the same numbers although their batches differ.
    assert r0["logs"][:2] == r1["logs"][:2]
    # rank 1 alone saw an inf; both ranks skipped and kept their weights.
    assert third["skipped"] == r1["logs"][2]["skipped"] == 1.0
    assert r0["unchanged_after_skip"] and r1["unchanged_after_skip"]
