"""Vectorized policy rollouts in the evaluation environment."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import gymnasium as gym
import numpy as np

from lit_offrl.data.minari_io import flatten_batch


def make_vector_env(make_env: Callable[[], gym.Env], num_envs: int) -> gym.vector.SyncVectorEnv:
    """`num_envs` copies of the evaluation env stepped together in this process (cheap envs, few cores)."""
    return gym.vector.SyncVectorEnv([make_env for _ in range(num_envs)])


def rollout(policy: Callable[[np.ndarray], np.ndarray], envs: gym.vector.VectorEnv, seeds: Sequence[int],
            observation_space: gym.Space) -> tuple[np.ndarray, np.ndarray]:
    """Run one episode in each sub-env (reset with `seeds`) and return (episode returns, episode lengths).

    `policy` maps a batch of flat observations to a batch of actions in the env's bounds. A sub-env that
    finishes first keeps stepping (its later rewards are ignored) until all episodes are over.
    """
    assert envs.num_envs == len(seeds), "one sub-env per episode seed"
    obs, _ = envs.reset(seed=[int(s) for s in seeds])
    returns = np.zeros(envs.num_envs)
    lengths = np.zeros(envs.num_envs, dtype=np.int64)
    running = np.ones(envs.num_envs, dtype=bool)
    while running.any():
        action = policy(flatten_batch(observation_space, obs))
        obs, reward, terminated, truncated, _ = envs.step(action)
        returns += np.where(running, reward, 0.0)
        lengths += running
        running &= ~(terminated | truncated)
    return returns, lengths
