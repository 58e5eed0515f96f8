"""d3rlpy's updates/s on the arrays `throughput.py` wrote; runs in d3rlpy's own virtual environment.

    python d3rlpy_worker.py ALGO ARRAYS.npz --updates N --warmup W --batch-size B --device cpu ...

Same networks as lit_offrl's defaults (TD3+BC and IQL 2x256, CQL 3x256), same batch size; timing starts at
update W (d3rlpy's `fit` callback runs after every update). Prints `RESULT {json}` like throughput.py's workers.
"""

import argparse
import json
import time

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("algo")
    parser.add_argument("arrays")
    parser.add_argument("--updates", type=int, default=3000)
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="32-true")
    parser.add_argument("--dataset-id", default="")
    parser.add_argument("--compile-mode", default="default")  # passed to every worker; d3rlpy does not use it
    parser.add_argument("--compile-graph", action="store_true", help="d3rlpy >= 2.7: its torch.compile (+ CUDA graphs)")
    args, _ = parser.parse_known_args()  # lit_offrl-only options (--updates-per-step, --hidden) are ignored

    import d3rlpy
    import torch

    torch.manual_seed(0)
    arrays = np.load(args.arrays)
    dataset = d3rlpy.dataset.MDPDataset(arrays["observations"], arrays["actions"], arrays["rewards"],
                                        arrays["terminals"], timeouts=arrays["timeouts"])
    encoder = d3rlpy.models.VectorEncoderFactory(hidden_units=[256, 256, 256] if args.algo == "CQL" else [256, 256])
    common = dict(batch_size=args.batch_size, actor_encoder_factory=encoder, critic_encoder_factory=encoder,
                  **({"compile_graph": True} if args.compile_graph else {}))
    config = {"TD3BC": lambda: d3rlpy.algos.TD3PlusBCConfig(**common),
              "IQL": lambda: d3rlpy.algos.IQLConfig(**common, value_encoder_factory=encoder),
              "CQL": lambda: d3rlpy.algos.CQLConfig(**common)}[args.algo]()
    device = "cuda:0" if args.device.startswith("cuda") else "cpu:0"
    algo = config.create(device=device)
    marks = {}

    def callback(_algo, _epoch, total_step):
        if total_step == args.warmup:
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            marks["start"] = time.perf_counter()

    algo.fit(dataset, n_steps=args.updates, n_steps_per_epoch=args.updates, show_progress=False, save_interval=10**9,
             logger_adapter=d3rlpy.logging.NoopAdapterFactory(), callback=callback)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    rate = (args.updates - args.warmup) / (time.perf_counter() - marks["start"])
    memory = (torch.cuda.max_memory_allocated() / 2**20 if device.startswith("cuda")
              else next(int(line.split()[1]) / 1024 for line in open("/proc/self/status") if line.startswith("VmHWM:")))
    print("RESULT " + json.dumps({"updates_per_sec": rate, "peak_memory_mb": memory, "d3rlpy": d3rlpy.__version__}))


if __name__ == "__main__":
    main()
