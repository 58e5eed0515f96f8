"""Train one d3rlpy algorithm on the arrays `scores.py --impl d3rlpy` wrote and save its greedy policy (TorchScript,
d3rlpy's `save_policy`: its observation and action scalers inside) every `--eval-every` updates; runs in d3rlpy's own
virtual environment (benchmarks/.d3rlpy-venv). `scores.py` evaluates the saved policies with lit_offrl's evaluation,
so both libraries are scored by the same episodes, seeds and reference returns.

    python d3rlpy_train.py IQL ARRAYS.npz OUT_DIR --steps 20000 --eval-every 5000 --seed 0

Settings are d3rlpy's own reproduction scripts (reproductions/offline/{td3_plus_bc,iql,awac}.py in the d3rlpy
repository, written for D4RL's locomotion datasets), with two changes that the budget forces: IQL's cosine actor
schedule runs over this run's `--steps` (the script decays it over its own 500k-update run: T_max = n_steps), and
`n_steps` is `--steps`. BC has no reproduction script: d3rlpy's BCConfig defaults (learning rate 1e-3, batch 100,
a deterministic policy), with its encoder widened to the 2x256 every other method here uses.
"""

import argparse
import json
import time
from pathlib import Path

import numpy as np


def config(algo: str, steps: int):
    import d3rlpy

    if algo == "TD3BC":  # reproductions/offline/td3_plus_bc.py
        return d3rlpy.algos.TD3PlusBCConfig(
            actor_learning_rate=3e-4, critic_learning_rate=3e-4, batch_size=256, target_smoothing_sigma=0.2,
            target_smoothing_clip=0.5, alpha=2.5, update_actor_interval=2,
            observation_scaler=d3rlpy.preprocessing.StandardObservationScaler())
    if algo == "IQL":  # reproductions/offline/iql.py, T_max = n_steps as there
        return d3rlpy.algos.IQLConfig(
            actor_learning_rate=3e-4, critic_learning_rate=3e-4,
            actor_optim_factory=d3rlpy.optimizers.AdamFactory(
                lr_scheduler_factory=d3rlpy.optimizers.CosineAnnealingLRFactory(T_max=steps)),
            batch_size=256, weight_temp=3.0, max_weight=100.0, expectile=0.7,
            reward_scaler=d3rlpy.preprocessing.ReturnBasedRewardScaler(multiplier=1000.0))
    if algo == "AWAC":  # reproductions/offline/awac.py
        encoder = d3rlpy.models.encoders.VectorEncoderFactory([256, 256, 256, 256])
        return d3rlpy.algos.AWACConfig(
            actor_learning_rate=3e-4, actor_encoder_factory=encoder,
            actor_optim_factory=d3rlpy.optimizers.AdamFactory(weight_decay=1e-4), critic_learning_rate=3e-4,
            critic_encoder_factory=encoder, batch_size=1024, lam=1.0)
    if algo == "BC":  # no reproduction script: BCConfig's defaults, 2x256 encoder
        return d3rlpy.algos.BCConfig(encoder_factory=d3rlpy.models.encoders.VectorEncoderFactory([256, 256]))
    raise SystemExit(f"no d3rlpy setting for {algo}: TD3BC, IQL, AWAC or BC")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("algo")
    parser.add_argument("arrays")
    parser.add_argument("out", type=Path)
    parser.add_argument("--steps", type=int, required=True)
    parser.add_argument("--eval-every", type=int, required=True)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import d3rlpy

    arrays = np.load(args.arrays)
    dataset = d3rlpy.dataset.MDPDataset(arrays["observations"], arrays["actions"], arrays["rewards"],
                                        arrays["terminals"], timeouts=arrays["timeouts"])
    d3rlpy.seed(args.seed)
    algo = config(args.algo, args.steps).create(device="cpu:0")
    args.out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()

    def save(_algo, _epoch, total_step):
        if total_step % args.eval_every == 0:
            algo.save_policy(str(args.out / f"policy_{total_step}.pt"))

    algo.fit(dataset, n_steps=args.steps, n_steps_per_epoch=args.eval_every, show_progress=False,
             save_interval=10**9, logger_adapter=d3rlpy.logging.NoopAdapterFactory(), callback=save)
    print("RESULT " + json.dumps({"seconds": time.perf_counter() - start, "d3rlpy": d3rlpy.__version__}))


if __name__ == "__main__":
    main()
