"""Vectorized policy rollouts in the evaluation environment."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import gymnasium as gym
import numpy as np

from lit_offrl.data.minari_io import flatten_batch


def make_vector_env(make_env: Callable[[], gym.Env], num_envs: int) -> gym.vector.SyncVectorEnv:
    """`num_envs` copies of the evaluation env stepped together in this process (cheap envs, few cores)."""
    return gym.vector.SyncVectorEnv([make_env for _ in range(num_envs)])


@dataclass
class EpisodeOutcomes:
    """Per-episode results of `rollout_episodes`, one entry per seed.

    `success`: whether any step of the episode had ``info["success"]`` true (PointMaze, AntMaze, Adroit), None
    when no step reported it. `tasks_completed`: the number of sub-tasks done at the episode's last step,
    ``len(info["episode_task_completions"])`` (FrankaKitchen), None when no step reported it.
    """

    returns: np.ndarray
    lengths: np.ndarray
    success: np.ndarray | None = None
    tasks_completed: np.ndarray | None = None


def _reported(infos: dict, key: str, num_envs: int) -> tuple[np.ndarray, np.ndarray] | None:
    """(mask of the sub-envs whose info has `key`, their values) from a vector env's infos, or None."""
    if key not in infos:
        return None
    mask = np.asarray(infos.get(f"_{key}", np.ones(num_envs, dtype=bool)), dtype=bool)
    return mask, infos[key]


def rollout_episodes(policy: Callable[[np.ndarray], np.ndarray], envs: gym.vector.VectorEnv, seeds: Sequence[int],
                     observation_space: gym.Space) -> EpisodeOutcomes:
    """Run one episode in each sub-env (reset with `seeds`) and return its return, length and, where the env
    reports them in its infos, success and completed sub-tasks.

    `policy` maps a batch of flat observations to a batch of actions in the env's bounds. A sub-env that
    finishes first keeps stepping (its later rewards and infos, from the next episode, are ignored) until all
    episodes are over.
    """
    assert envs.num_envs == len(seeds), "one sub-env per episode seed"
    num_envs = envs.num_envs
    obs, _ = envs.reset(seed=[int(s) for s in seeds])
    returns = np.zeros(num_envs)
    lengths = np.zeros(num_envs, dtype=np.int64)
    running = np.ones(num_envs, dtype=bool)
    success = np.zeros(num_envs, dtype=bool)
    tasks = np.zeros(num_envs, dtype=np.int64)
    saw_success = saw_tasks = False
    while running.any():
        action = policy(flatten_batch(observation_space, obs))
        obs, reward, terminated, truncated, infos = envs.step(action)
        returns += np.where(running, reward, 0.0)
        lengths += running
        reported = _reported(infos, "success", num_envs)
        if reported is not None:
            mask, value = reported
            saw_success = True
            success |= running & mask & np.asarray(value, dtype=bool)
        reported = _reported(infos, "episode_task_completions", num_envs)
        if reported is not None:
            mask, value = reported
            saw_tasks = True
            for i in np.flatnonzero(running & mask):
                tasks[i] = len(value[i]) if value[i] is not None else 0
        running &= ~(terminated | truncated)
    return EpisodeOutcomes(returns, lengths, success if saw_success else None, tasks if saw_tasks else None)


def rollout(policy: Callable[[np.ndarray], np.ndarray], envs: gym.vector.VectorEnv, seeds: Sequence[int],
            observation_space: gym.Space) -> tuple[np.ndarray, np.ndarray]:
    """Run one episode in each sub-env (reset with `seeds`) and return (episode returns, episode lengths); see
    `rollout_episodes` for success and completed sub-tasks as well."""
    outcomes = rollout_episodes(policy, envs, seeds, observation_space)
    return outcomes.returns, outcomes.lengths
