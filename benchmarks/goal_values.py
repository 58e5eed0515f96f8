"""What an IQL checkpoint's value function says along the data, on a goal dataset (AntMaze, PointMaze): V(s) from
the start of episodes that reach their goal to the goal itself, and the spread of IQL's advantage weights
exp(beta (Q - V)) clipped at max_weight over the data's own actions.

    MINARI_DATASETS_PATH=benchmarks/minari python benchmarks/goal_values.py \
        benchmarks/runs/lit-offrl_antmaze_umaze-diverse-v0_IQL_seed0_200000/run/checkpoints/last.ckpt

With rewards r - 1 (CORL's AntMaze setting: -1 per step, 0 at the goal) no return exceeds 0, so a V above 0 at
the goal is bias, not value. The dataset is the checkpoint's own (`datamodule_hyper_parameters.dataset_id`).
"""

from __future__ import annotations

import argparse

import numpy as np
import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint")
    parser.add_argument("--show", type=int, default=4, help="goal-reaching episodes to print V along")
    parser.add_argument("--min-length", type=int, default=250, help="only episodes that reach the goal after this")
    parser.add_argument("--weight-episodes", type=int, default=200, help="episodes the weight statistics use")
    parser.add_argument("--radius", type=float, default=0.45, help="goal reached within this distance")
    args = parser.parse_args()

    import minari

    from lit_offrl.data.minari_io import flatten_batch
    from lit_offrl.export import load_checkpoint_model

    model, checkpoint = load_checkpoint_model(args.checkpoint)
    dataset_id = checkpoint["datamodule_hyper_parameters"]["dataset_id"]
    dataset = minari.load_dataset(dataset_id)
    space = dataset.observation_space
    shown, weights = 0, []
    for index, episode in enumerate(dataset.iterate_episodes()):
        if index >= args.weight_episodes and shown >= args.show:
            break
        obs = episode.observations
        flat = flatten_batch(space, obs)  # as training flattened it (gymnasium's order)
        x = (torch.as_tensor(flat, dtype=torch.float32) - model.obs_mean) / model.obs_std
        with torch.no_grad():
            v = model.value(x).numpy()
            q = model.critic(x[:-1], torch.as_tensor(episode.actions, dtype=torch.float32)).min(0).values.numpy()
        if index < args.weight_episodes:
            weights.append(np.minimum(np.exp(model.beta * (q - v[:-1])), model.max_weight))
        distance = np.linalg.norm(obs["achieved_goal"] - obs["desired_goal"], axis=1)
        reached = np.flatnonzero(distance < args.radius)
        if shown < args.show and len(reached) and reached[0] > args.min_length:
            at = np.linspace(0, min(reached[0] + 50, len(v) - 1), 10).astype(int)
            print(f"episode {index}: goal {np.round(obs['desired_goal'][0], 1)}, reached at step {reached[0]}")
            print("  distance to goal", np.round(distance[at], 1))
            print("  V(s)            ", np.round(v[at], 1))
            shown += 1
    w = np.concatenate(weights)
    print(f"advantage weights over {len(weights)} episodes ({len(w)} steps): mean {w.mean():.2f}, "
          f"{(w >= model.max_weight).mean():.1%} at the clip {model.max_weight:g}, {(w < 0.01).mean():.1%} below 0.01")


if __name__ == "__main__":
    main()
