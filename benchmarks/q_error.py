"""How far a trained critic's value of its own policy is from what that policy earns: the extrapolation-error check.

For each run folder (benchmarks/runs/<name>/run, with the fit's config.yaml and checkpoints/last.ckpt), roll the
policy out (deterministic) on the data module's evaluation episodes and compare, on the states it visits,
  Q(s_t, pi(s_t))  (the min over the critic ensemble, the value the algorithms back up)
with the discounted return the policy then actually collected from s_t,
  G_t = sum_k gamma^k r_{t+k}  (rewards transformed as the fit's data module did: normalize_reward, scale, shift).
A critic that extrapolates to actions the data does not hold over-values them: Q - G grows, and the policy that
climbs Q goes where the critic is wrong. States within 300 steps of a time-limit truncation are left out (their G
misses a tail worth up to gamma^300 = 5%); states of episodes that fell (terminated) are all kept.

    python benchmarks/q_error.py benchmarks/runs/lit-offrl_hopper_medium-replay-v0_{SAC,TD3,AWAC}_seed*_20000/run

Prints one markdown row per run: normalized score, mean Q(s0, pi(s0)) and G_0 at the initial states, mean
Q - G and (Q - G) / |G| over all kept states, and the mean Q(s, a) on the data's own actions beside the data's
discounted returns-to-go (the critic's fit where it has data).
"""

from __future__ import annotations

import argparse
import importlib
from pathlib import Path

import numpy as np
import torch
import yaml

from lit_offrl.data.datamodule import OfflineDataModule
from lit_offrl.data.minari_io import flatten_batch

TAIL = 300


def discounted_to_go(rewards: np.ndarray, gamma: float) -> np.ndarray:
    out = np.zeros_like(rewards, dtype=np.float64)
    running = 0.0
    for t in range(len(rewards) - 1, -1, -1):
        running = rewards[t] + gamma * running
        out[t] = running
    return out


def load(run: Path):
    config = yaml.safe_load((run / "config.yaml").read_text())
    module, _, name = config["model"]["class_path"].rpartition(".")
    cls = getattr(importlib.import_module(module), name)
    model = cls.load_from_checkpoint(run / "checkpoints" / "last.ckpt", map_location="cpu").eval()
    dm = OfflineDataModule(**config["data"]["init_args"])
    dm.setup("fit")
    return model, dm


@torch.no_grad()
def q_pi(model, dm, obs: np.ndarray) -> np.ndarray:
    norm = dm.normalize(torch.as_tensor(obs, dtype=torch.float32))
    action = model.policy_action(norm, True).float()
    return model.critic(norm, action).min(0).values.numpy()


def measure(run: Path) -> dict:
    torch.manual_seed(0)
    model, dm = load(run)
    gamma = float(model.hparams.gamma)
    transform = lambda r: dm.transform_rewards(torch.as_tensor(r)).numpy()  # noqa: E731
    env = dm.make_eval_env()
    q0, g0, errors, rel, scores = [], [], [], [], []
    for seed in dm.episode_seeds():
        obs, _ = env.reset(seed=int(seed))
        observations, rewards = [], []
        done = truncated = False
        while not (done or truncated):
            flat = flatten_batch(dm.observation_space, [obs])
            observations.append(flat[0])
            obs, reward, done, truncated, _ = env.step(model.act(flat).numpy()[0])
            rewards.append(reward)
        rewards = np.asarray(rewards, dtype=np.float64)
        scores.append(float(dm.normalized_score(torch.tensor([rewards.sum()], dtype=torch.float32))[0]))
        g = discounted_to_go(transform(rewards), gamma)
        q = q_pi(model, dm, np.asarray(observations))
        keep = len(rewards) if done else max(0, len(rewards) - TAIL)
        q0.append(q[0])
        g0.append(g[0])
        errors.append(q[:keep] - g[:keep])
        rel.append((q[:keep] - g[:keep]) / np.maximum(np.abs(g[:keep]), 1e-6))
    errors, rel = np.concatenate(errors), np.concatenate(rel)
    # The critic on the data's own actions, against the data's discounted returns-to-go (every 10th transition).
    index = torch.arange(0, len(dm.transitions), 10)
    batch = dm.transitions.batch(index)
    with torch.no_grad():
        q_data = model.critic(batch.obs, batch.action).min(0).values.numpy()
    g_data = data_returns_to_go(dm, transform, gamma)[index.numpy()]
    return {"score": float(np.mean(scores)), "q0": float(np.mean(q0)), "g0": float(np.mean(g0)),
            "error": float(errors.mean()), "relative": float(rel.mean()), "states": int(errors.size),
            "q_data": float(q_data.mean()), "g_data": float(g_data.mean())}


def data_returns_to_go(dm, transform, gamma: float) -> np.ndarray:
    """The discounted return-to-go of every transition of the data (its own episode's rewards, transformed)."""
    data = dm.data
    out = np.zeros(len(data.rewards))
    for start, end in zip(data.episode_starts, data.episode_ends):
        out[start:end] = discounted_to_go(transform(data.rewards[start:end].astype(np.float64)), gamma)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print("| run | score | Q(s0, pi) | G_0 | mean Q - G | mean (Q - G) / abs G | states | data: Q(s, a) | data: G |")
    print("|---|---|---|---|---|---|---|---|---|")
    for run in args.runs:
        m = measure(run)
        print(f"| {run.parent.name} | {m['score']:.1f} | {m['q0']:.1f} | {m['g0']:.1f} | {m['error']:.1f} | "
              f"{m['relative']:+.2f} | {m['states']} | {m['q_data']:.1f} | {m['g_data']:.1f} |", flush=True)


if __name__ == "__main__":
    main()
