"""Started by tests/test_distributed.py under torchrun: one process of a real gloo group.

    python -m torch.distributed.run --nproc_per_node 2 tests/distributed_worker.py OUT_DIR MODE [MODE ...]

collectives  shard / gather_objects / broadcast_object / sum_over_ranks across the ranks
batchnorm    synchronised BatchNorm on the CPU against one BatchNorm over the whole batch
train        train_blocks(parallel=True) on the store in OUT_DIR/store; rank 0 saves the result
gradients    one backward of the DDP-wrapped stacked network (float64) on this rank's share of one
             batch; rank 0 saves the gradients (after DDP's all-reduce) under the reference's keys
timeout      rank 1 never reaches the barrier: rank 0 must stop with one line, not hang

The modes run one after the other in the same process group (one start of the processes for
several checks), each in its own folder OUT_DIR/MODE, where it finds its inputs (store/,
cloze.json) and where each rank writes what it saw to <mode>_rank<r>.json (or .pt); errors
are the scripts' one-line errors (utils.cli's format, exit status 2).
"""
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from utils.infra import distributed  # noqa: E402
from utils.infra.errors import VECError  # noqa: E402

# The modes that train import the pipeline's modules (torchvision among them) themselves: a launch
# of the other modes alone (the timeout's) starts seconds sooner without them.


def collectives(out: Path) -> None:
    rank, world = distributed.rank(), distributed.world_size()
    items = list(range(11))
    mine = distributed.shard(items)
    gathered = distributed.gather_objects(mine)
    total = distributed.sum_over_ranks(torch.tensor([float(rank + 1)]))
    record = {"rank": rank, "world": world, "main": distributed.is_main(), "mine": mine,
              "gathered": [x for part in gathered for x in part], "broadcast": distributed.broadcast_object(
                  f"from {rank}"), "sum": total.item(), "arrays": [a.tolist() for a in distributed.gather_objects(
                      np.arange(rank + 1))]}
    distributed.barrier()
    (out / f"collectives_rank{rank}.json").write_text(json.dumps(record))


def batchnorm(out: Path) -> None:
    """Forward and backward of a synchronised BatchNorm (inside DDP) against a plain one on all rows."""
    rank, world = distributed.rank(), distributed.world_size()
    generator = torch.Generator().manual_seed(0)
    x_all = torch.randn(7, 3, 5, 5, generator=generator) * 3 + 1  # 7 rows: shares of 4 and 3
    weights = torch.randn(7, 3, 5, 5, generator=generator)
    start, stop = distributed.share_bounds(7, rank, world)

    reference = nn.BatchNorm2d(3)
    x_ref = x_all.clone().requires_grad_(True)
    expected = reference(x_ref)
    (expected * weights).sum().backward()

    model = distributed.data_parallel(nn.Sequential(nn.BatchNorm2d(3)), "cpu")
    x_mine = x_all[start:stop].clone().requires_grad_(True)
    output = model(x_mine)
    # Times world_size, as train_block does: DDP averages the parameter gradients over the
    # ranks; an input's gradient (summed over the ranks through the statistics) is world_size x.
    (output * weights[start:stop]).sum().mul(world).backward()
    layer = model.module[0]
    result = {
        "type": type(layer).__name__,
        "output": float((output - expected[start:stop]).detach().abs().max()),
        "input_grad": float((x_mine.grad / world - x_ref.grad[start:stop]).abs().max()),
        "weight_grad": float((layer.weight.grad - reference.weight.grad).abs().max()),
        "bias_grad": float((layer.bias.grad - reference.bias.grad).abs().max()),
        "running_mean": float((layer.running_mean - reference.running_mean).abs().max()),
        "running_var": float((layer.running_var - reference.running_var).abs().max()),
    }
    (out / f"batchnorm_rank{rank}.json").write_text(json.dumps(result))


def train(out: Path) -> None:
    from utils.config import ClozeConfig
    from utils.cubes import CubeStore
    from utils.training import train_blocks

    store = CubeStore.open(out / "store")
    cloze = ClozeConfig(**json.loads((out / "cloze.json").read_text()))
    trained = train_blocks(store, cloze, 1, 1, "cpu", seed=3, progress=False, parallel=True)
    if distributed.is_main():
        torch.save({"state": trained.states[0][0], "raw": torch.from_numpy(trained.raw_scores[0][0]),
                    "of": torch.from_numpy(trained.of_scores[0][0])}, out / "train_rank0.pt")


def gradients(out: Path) -> None:
    from utils.cloze_steps import TrainStep, cube_batches
    from models.stacked_cloze import Grouped
    from utils.config import ClozeConfig
    from utils.cubes import CubeStore
    from utils.trained_model import make_network

    store = CubeStore.open(out / "store")
    cloze = ClozeConfig(**json.loads((out / "cloze.json").read_text()))
    rank, world = distributed.rank(), distributed.world_size()
    torch.manual_seed(3)
    model = make_network(cloze, execution=Grouped()).double()
    wrapped = distributed.data_parallel(model, "cpu")
    step = TrainStep(wrapped, learning_rate=cloze.learning_rate, lambda_raw=cloze.lambda_raw,
                     lambda_of=cloze.lambda_of, use_flow=cloze.use_flow, batch_size=cloze.batch_size,
                     device=torch.device("cpu"), world_size=world)
    raw, flow = next(cube_batches(store, np.arange(len(store)), cloze.batch_size, "cpu", None, rank, world))
    wrapped.train()
    step.loss(raw.double(), flow.double(), min(cloze.batch_size, len(store))).backward()
    grads = model.map_to_reference({k: p.grad for k, p in model.named_parameters()})
    if distributed.is_main():
        torch.save({k: v.clone() for k, v in grads.items()}, out / "gradients_rank0.pt")


def timeout(out: Path) -> None:
    if distributed.rank() == 1:
        time.sleep(40)  # far beyond the group's timeout: rank 0 must not wait for it
        return
    started = time.time()
    try:
        distributed.barrier()
    finally:
        (out / "timeout_rank0.json").write_text(json.dumps({"waited": time.time() - started}))


if __name__ == "__main__":
    out, modes = Path(sys.argv[1]), sys.argv[2:]
    try:
        with distributed.process_group("cpu"):
            for mode in modes:
                {"collectives": collectives, "batchnorm": batchnorm, "train": train, "gradients": gradients,
                 "timeout": timeout}[mode](out / mode)
    except VECError as err:
        print(f"error: {distributed.error_prefix()}{err}", file=sys.stderr)
        sys.exit(2)
