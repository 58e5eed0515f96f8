"""Small Minari datasets with known contents, written into the test's own Minari root.

Use `use_minari_root(tmp_path, monkeypatch)` first (Minari reads MINARI_DATASETS_PATH on every call), then
one of the `make_*_dataset` helpers. Each helper returns a `BuiltDataset`: the `MinariDataset` as Minari
loads it back plus the exact arrays that were written, so a test can compare flattened data value by value.

Box datasets encode where a value came from: observation feature j at step t of episode e is
`box_obs_value(e, t, j) = 100 e + t + j / 4` (exact in float32), so a flat row says which episode and step
it is, and `next_observations` can be checked to never cross an episode boundary.
"""

from __future__ import annotations

import copy
import dataclasses
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

# Metadata Minari asks for (it warns when any is missing); the values do not matter to the tests.
_METADATA = dict(author="lit_offrl tests", author_email="tests@lit-offrl.invalid", algorithm_name="hand-written",
                 code_permalink="tests/minari_fixtures.py", description="test dataset with known values")


@dataclass
class Episode:
    """One episode exactly as written: `observations` has T + 1 entries (a dict of such arrays for Dict spaces)."""

    observations: Any
    actions: np.ndarray
    rewards: np.ndarray
    terminations: np.ndarray
    truncations: np.ndarray

    def __len__(self) -> int:
        return len(self.rewards)


@dataclass
class BuiltDataset:
    dataset: Any                      # minari.MinariDataset
    episodes: list[Episode]
    observation_space: spaces.Space
    action_space: spaces.Space

    @property
    def dataset_id(self) -> str:
        return self.dataset.spec.dataset_id

    @property
    def lengths(self) -> list[int]:
        return [len(episode) for episode in self.episodes]

    @property
    def returns(self) -> np.ndarray:
        return np.array([float(np.sum(episode.rewards, dtype=np.float64)) for episode in self.episodes])


def use_minari_root(path: Path, monkeypatch) -> Path:
    """Point Minari at an empty folder of this test's own (created if missing) and return it."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(path))
    return path


def write_dataset(dataset_id: str, episodes: Sequence[Episode], observation_space: spaces.Space,
                  action_space: spaces.Space, atomic: bool = False, **metadata: Any) -> BuiltDataset:
    """Write `episodes` as the Minari dataset `dataset_id` (no environment: the spaces are given explicitly);
    `atomic`: through lit_offrl's `create_dataset_atomically`, as the recipes write, instead of Minari's writer."""
    import minari
    from minari.data_collector import EpisodeBuffer

    buffers = [EpisodeBuffer(id=i, observations=ep.observations, actions=ep.actions, rewards=ep.rewards,
                             terminations=ep.terminations, truncations=ep.truncations)
               for i, ep in enumerate(episodes)]
    if atomic:
        from lit_offrl.data.minari_io import create_dataset_atomically as create
    else:
        create = minari.create_dataset_from_buffers
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "env_spec is None", "eval_env is set to None"
        dataset = create(
            dataset_id, buffer=buffers, observation_space=observation_space, action_space=action_space,
            **{**_METADATA, **metadata})
    return BuiltDataset(dataset, list(episodes), observation_space, action_space)


def box_obs_value(episode: int, step: int | np.ndarray, feature: int | np.ndarray) -> np.ndarray:
    """The value written at observation feature `feature` of step `step` of episode `episode`."""
    return np.asarray(100.0 * episode + np.asarray(step) + np.asarray(feature) / 4.0, dtype=np.float32)


def box_observations(episode: int, length: int, obs_dim: int) -> np.ndarray:
    """(length + 1, obs_dim) float32 observations of episode `episode`, encoded with `box_obs_value`."""
    return box_obs_value(episode, np.arange(length + 1)[:, None], np.arange(obs_dim)[None, :])


def _end_flags(length: int, terminated: bool) -> tuple[np.ndarray, np.ndarray]:
    terminations, truncations = np.zeros(length, dtype=bool), np.zeros(length, dtype=bool)
    if length:
        (terminations if terminated else truncations)[-1] = True
    return terminations, truncations


def make_box_dataset(
    dataset_id: str = "test/box-v0",
    episodes: Sequence[int] = (3, 2, 4),
    obs_dim: int = 3,
    action_space: spaces.Box | None = None,
    seed: int = 0,
    terminated: Sequence[bool] | None = None,
    observations: Sequence[np.ndarray] | None = None,
    actions: Sequence[np.ndarray] | None = None,
    rewards: Sequence[np.ndarray] | Callable[[int, int], np.ndarray] | None = None,
    nan_in: str | None = None,
    nan_at: tuple[int, int] = (0, 1),
    nan_value: float = float("nan"),
    **metadata: Any,
) -> BuiltDataset:
    """A dataset with Box observations and Box actions whose every value is known.

    Args:
        episodes: the length (number of transitions) of each episode.
        obs_dim: observation size; observations follow `box_observations` unless `observations` is given.
        action_space: a Box (default Box(-2, 2, (2,))); actions are drawn uniformly inside its bounds with `seed`.
        terminated: per episode, True if its last step is a termination, False if it is a truncation;
            default: episode e terminates when e is even and is truncated otherwise.
        observations: per episode, a (T + 1, obs_dim) array to write instead of the encoded observations.
        actions: per episode, a (T, *action_space.shape) array to write instead of the uniform draws (needed
            for an unbounded action space).
        rewards: per episode arrays, or `f(episode, length) -> (T,)`; default reward at step t of episode e is
            `e + t / 8`.
        nan_in: "observations", "actions" or "rewards": write `nan_value` at `nan_at` = (episode, step), in
            every feature of that observation / action (the observation index may be T, the final one).
    """
    action_space = action_space if action_space is not None else spaces.Box(-2.0, 2.0, (2,), np.float32)
    obs_space = spaces.Box(-np.inf, np.inf, (obs_dim,), np.float32)
    terminated = [e % 2 == 0 for e in range(len(episodes))] if terminated is None else list(terminated)
    assert len(terminated) == len(episodes)
    rng = np.random.default_rng(seed)
    low = np.broadcast_to(action_space.low, action_space.shape)
    high = np.broadcast_to(action_space.high, action_space.shape)
    built = []
    for e, length in enumerate(episodes):
        obs = box_observations(e, length, obs_dim) if observations is None else np.asarray(observations[e], np.float32)
        assert obs.shape == (length + 1, obs_dim), obs.shape
        if actions is None:
            action = rng.uniform(low, high, size=(length, *action_space.shape)).astype(np.float32)
        else:
            action = np.array(actions[e], dtype=np.float32)
        assert action.shape == (length, *action_space.shape), action.shape
        if rewards is None:
            reward = e + np.arange(length) / 8.0
        elif callable(rewards):
            reward = rewards(e, length)
        else:
            reward = rewards[e]
        reward = np.asarray(reward, dtype=np.float64)
        assert reward.shape == (length,), reward.shape
        terminations, truncations = _end_flags(length, terminated[e])
        built.append(Episode(obs.copy(), action, reward.copy(), terminations, truncations))
    if nan_in is not None:
        e, t = nan_at
        target = {"observations": built[e].observations, "actions": built[e].actions, "rewards": built[e].rewards}
        target[nan_in][t] = nan_value
    return write_dataset(dataset_id, built, obs_space, action_space, **metadata)


def pointmaze_like_space() -> spaces.Dict:
    """PointMaze's observation space: observation (4,), achieved_goal (2,), desired_goal (2,)."""
    box = lambda n: spaces.Box(-np.inf, np.inf, (n,), np.float64)  # noqa: E731
    return spaces.Dict({"observation": box(4), "achieved_goal": box(2), "desired_goal": box(2)})


def make_dict_dataset(dataset_id: str = "test/dict-v0", episodes: Sequence[int] = (4, 3), seed: int = 0,
                      **metadata: Any) -> BuiltDataset:
    """A PointMaze-like dataset: Dict observations (achieved_goal = observation[:2], a fixed desired_goal per
    episode, all values distinct random floats), Box(-1, 1, (2,)) actions, all episodes truncated."""
    rng = np.random.default_rng(seed)
    action_space = spaces.Box(-1.0, 1.0, (2,), np.float32)
    built = []
    for length in episodes:
        observation = rng.normal(size=(length + 1, 4))
        obs = {"observation": observation, "achieved_goal": observation[:, :2].copy(),
               "desired_goal": np.repeat(rng.normal(size=(1, 2)), length + 1, axis=0)}
        actions = rng.uniform(-1.0, 1.0, size=(length, 2)).astype(np.float32)
        terminations, truncations = _end_flags(length, terminated=False)
        built.append(Episode(obs, actions, rng.normal(size=length), terminations, truncations))
    return write_dataset(dataset_id, built, pointmaze_like_space(), action_space, **metadata)


def make_discrete_dataset(dataset_id: str = "test/discrete-v0", episodes: Sequence[int] = (3, 2),
                          obs_dim: int = 3, n_actions: int = 3, **metadata: Any) -> BuiltDataset:
    """Box observations as in `make_box_dataset`, Discrete(n_actions) actions."""
    built = []
    for e, length in enumerate(episodes):
        terminations, truncations = _end_flags(length, terminated=True)
        built.append(Episode(box_observations(e, length, obs_dim), np.arange(length, dtype=np.int64) % n_actions,
                             np.ones(length), terminations, truncations))
    obs_space = spaces.Box(-np.inf, np.inf, (obs_dim,), np.float32)
    return write_dataset(dataset_id, built, obs_space, spaces.Discrete(n_actions), **metadata)


def make_empty_dataset(dataset_id: str = "test/empty-v0", obs_dim: int = 3, **metadata: Any) -> BuiltDataset:
    """A dataset with no episodes at all (Minari 0.5 writes one; its total_steps and total_episodes are 0).

    An episode of length 0 cannot be written instead: Minari 0.5.4's `create_dataset_from_buffers` fails with
    an IndexError on an EpisodeBuffer without steps, so "every episode is empty" is not a dataset one can build.
    """
    obs_space = spaces.Box(-np.inf, np.inf, (obs_dim,), np.float32)
    return write_dataset(dataset_id, [], obs_space, spaces.Box(-1.0, 1.0, (2,), np.float32), **metadata)


def flat_rows(space: spaces.Space, observations: Any, length: int) -> np.ndarray:
    """Every one of `length` observations of an episode flattened one at a time with `gymnasium.spaces.flatten`."""
    def single(values: Any, i: int):
        if isinstance(values, dict):  # nested Dict spaces: a dict of dicts of arrays
            return {key: single(value, i) for key, value in values.items()}
        return values[i]

    return np.stack([gym.spaces.flatten(space, single(observations, i)) for i in range(length)]).astype(np.float32)


# ---------------------------------------------------------------------------------------------- broken datasets
def write_interrupted(dataset_id: str, episodes: Sequence[int] = (3, 2, 4), obs_dim: int = 3,
                      killed_at: int = 1) -> Path:
    """What a build killed halfway leaves when it writes in place (Minari's `create_dataset_from_buffers`):
    the write is interrupted (KeyboardInterrupt, as Ctrl-C) while episode `killed_at` is written, so the folder
    has metadata of 0 episodes without `dataset_size` and an HDF5 file holding the episodes before it. Returns
    the dataset's folder."""
    import minari
    from minari.data_collector import EpisodeBuffer

    action_space = spaces.Box(-1.0, 1.0, (2,), np.float32)
    buffers: list[Any] = []
    for e, length in enumerate(episodes):
        terminations, truncations = _end_flags(length, terminated=False)
        buffers.append(_KilledWhileWriting() if e == killed_at else EpisodeBuffer(
            observations=box_observations(e, length, obs_dim), actions=np.zeros((length, 2), np.float32),
            rewards=np.ones(length), terminations=terminations, truncations=truncations))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            minari.create_dataset_from_buffers(dataset_id, buffer=buffers, action_space=action_space,
                                               observation_space=spaces.Box(-np.inf, np.inf, (obs_dim,), np.float32),
                                               **_METADATA)
    except KeyboardInterrupt:
        pass
    from minari.storage import get_dataset_path

    return Path(get_dataset_path(dataset_id))


class _KilledWhileWriting:
    """An episode buffer whose data cannot be read: Minari's writer stops at it as at a Ctrl-C."""

    id = seed = options = None

    @property
    def rewards(self):
        raise KeyboardInterrupt


def hdf5_path(dataset_id: str) -> Path:
    from minari.storage import get_dataset_path

    return Path(get_dataset_path(dataset_id)) / "data" / "main_data.hdf5"


def metadata_path(dataset_id: str) -> Path:
    from minari.storage import get_dataset_path

    return Path(get_dataset_path(dataset_id)) / "data" / "metadata.json"


def truncate_hdf5(dataset_id: str) -> Path:
    """Cut the dataset's main_data.hdf5 to half its bytes (a copy that ran out of disk); returns its path."""
    path = hdf5_path(dataset_id)
    with open(path, "r+b") as file:
        file.truncate(path.stat().st_size // 2)
    return path


def append_empty_episode(dataset_id: str, observation: Any, action_shape: tuple[int, ...]) -> None:
    """Add an episode of 0 steps (one observation, no actions or rewards) at the end of an HDF5 dataset, as a
    writer other than Minari's can (Minari 0.5.4's own writer fails with IndexError on one)."""
    import json

    import h5py

    with h5py.File(hdf5_path(dataset_id), "a") as file:
        index = sum(1 for key in file.keys() if key.startswith("episode_"))
        group = file.create_group(f"episode_{index}")
        group.attrs["id"], group.attrs["total_steps"] = index, 0

        def write(parent, name, value):
            if isinstance(value, dict):
                sub = parent.create_group(name)
                for key, part in value.items():
                    write(sub, key, part)
            else:
                parent.create_dataset(name, data=np.asarray(value)[None])

        write(group, "observations", observation)
        group.create_dataset("actions", data=np.zeros((0, *action_shape), np.float32))
        for name, dtype in (("rewards", np.float64), ("terminations", bool), ("truncations", bool)):
            group.create_dataset(name, data=np.zeros(0, dtype))
    path = metadata_path(dataset_id)
    metadata = json.loads(path.read_text())
    metadata["total_episodes"] += 1
    path.write_text(json.dumps(metadata))


class ResetFailsEnv(gym.Env):
    """A tiny env that can be made but not reset (a bare AssertionError, as FrankaKitchen-v1 under mujoco 4)."""

    observation_space = spaces.Box(-np.inf, np.inf, (3,), np.float32)
    action_space = spaces.Box(-2.0, 2.0, (2,), np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        assert self.np_random.random() > 2.0
        return np.zeros(3, np.float32), {}

    def step(self, action):
        return np.zeros(3, np.float32), 0.0, False, False, {}


def eval_env_spec(env_id: str, entry_point: str) -> Any:
    """An EnvSpec (not registered) for a dataset's `eval_env`: Minari stores it without making the env."""
    from gymnasium.envs.registration import EnvSpec

    return EnvSpec(id=env_id, entry_point=entry_point, max_episode_steps=10)


# ---------------------------------------------------------------------------------------- recorded from an env
def _stack(observations: Sequence[Any]) -> Any:
    """A list of (possibly nested dict) observations -> one array (or nested dict of arrays) along axis 0."""
    if isinstance(observations[0], dict):
        return {key: _stack([obs[key] for obs in observations]) for key in observations[0]}
    return np.stack([np.array(obs, copy=True) for obs in observations])


def record_random_episodes(env_spec: Any, lengths: Sequence[int], seed: int = 0) -> list[Episode]:
    """Episodes of uniformly random actions stepped in `gym.make(env_spec)` (each at most its length in
    `lengths`; the last step is a truncation unless the env ended the episode first), reset with seeds seed,
    seed + 1, .... Observations are copied as they come (some envs, FrankaKitchen-v1 among them, return the
    same arrays on every step)."""
    env = gym.make(env_spec)
    env.action_space.seed(seed)
    episodes = []
    try:
        for e, length in enumerate(lengths):
            obs, _ = env.reset(seed=seed + e)
            observations, actions, rewards, terminations, truncations = [_stack([obs])], [], [], [], []
            for t in range(length):
                action = env.action_space.sample()
                obs, reward, terminated, truncated, _ = env.step(action)
                observations.append(_stack([obs]))
                actions.append(np.asarray(action, np.float32))
                rewards.append(float(reward))
                truncated = truncated or (t == length - 1 and not terminated)
                terminations.append(bool(terminated))
                truncations.append(bool(truncated))
                if terminated or truncated:
                    break

            def concat(parts):
                if isinstance(parts[0], dict):
                    return {key: concat([part[key] for part in parts]) for key in parts[0]}
                return np.concatenate(parts)

            episodes.append(Episode(concat(observations), np.stack(actions), np.array(rewards),
                                    np.array(terminations), np.array(truncations)))
    finally:
        env.close()
    return episodes


def make_recorded_dataset(dataset_id: str, env_spec: Any, lengths: Sequence[int] = (8, 6), seed: int = 0,
                          **metadata: Any) -> BuiltDataset:
    """A dataset of `record_random_episodes(env_spec, lengths, seed)` whose env and eval env are `env_spec`."""
    env = gym.make(env_spec)
    observation_space, action_space = env.observation_space, env.action_space
    env.close()
    episodes = record_random_episodes(env_spec, lengths, seed)
    return write_dataset(dataset_id, episodes, observation_space, action_space,
                         **{"env": env_spec, "eval_env": env_spec, **metadata})


# ------------------------------------------------------------------------- look-alikes of Minari hub datasets
# How Minari's hub built each dataset family, read from Farama-Foundation/minari-dataset-generation-scripts (file
# named per family) and Minari's issues where the hub's metadata was changed after the scripts ran. A look-alike
# has the hub's env spec, eval env spec and reference returns, and a few short random-action episodes recorded
# in that env: what lit_offrl reads from a hub dataset, small.

# scripts/antmaze/create_antmaze_dataset.py (D4RL/antmaze/*-v1; DATASET_ID_TO_ENV_ID: the v4 envs, whose ant
# observation has 27 features; the v5 envs' has 105) and scripts/D4RL/antmaze/ (the *-v2 ids, same envs).
_ANTMAZE_ENVS = {"umaze": "AntMaze_UMaze-v4", "umaze-diverse": "AntMaze_UMaze-v4", "medium-play": "AntMaze_Medium-v4",
                 "medium-diverse": "AntMaze_Medium_Diverse_GR-v4", "large-play": "AntMaze_Large-v4",
                 "large-diverse": "AntMaze_Large_Diverse_GR-v4"}
# umaze (not diverse) collects in its own map: goal top left, reset bottom left.
ANTMAZE_UMAZE_DATA_MAP = [[1, 1, 1, 1, 1], [1, "g", 0, 0, 1], [1, 1, 1, 0, 1], [1, "r", 0, 0, 1], [1, 1, 1, 1, 1]]
# EVAL_ENV_MAPS: the eval env is the data env's spec with this maze_map (D4RL's fixed start and goal).
ANTMAZE_EVAL_MAPS = {
    "umaze": [[1, 1, 1, 1, 1], [1, 0, 0, "r", 1], [1, 0, 1, 1, 1], [1, 0, 0, "g", 1], [1, 1, 1, 1, 1]],
    "medium": [[1, 1, 1, 1, 1, 1, 1, 1], [1, "r", 0, 1, 1, 0, 0, 1], [1, 0, 0, 1, 0, 0, 0, 1], [1, 1, 0, 0, 0, 1, 1, 1],
               [1, 0, 0, 1, 0, 0, 0, 1], [1, 0, 1, 0, 0, 1, 0, 1], [1, 0, 0, 0, 1, 0, "g", 1], [1, 1, 1, 1, 1, 1, 1, 1]],
    "large": [[1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1], [1, "r", 0, 0, 0, 1, 0, 0, 0, 0, 0, 1],
              [1, 0, 1, 1, 0, 1, 0, 1, 0, 1, 0, 1], [1, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1],
              [1, 0, 1, 1, 1, 1, 0, 1, 1, 1, 0, 1], [1, 0, 0, 1, 0, 1, 0, 0, 0, 0, 0, 1],
              [1, 1, 0, 1, 0, 1, 0, 1, 0, 1, 1, 1], [1, 0, 0, 1, 0, 0, 0, 1, 0, "g", 0, 1],
              [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1]],
}
# The AntMaze script passes `expert_policy` (the waypoint controller in the eval env), so Minari stores a random
# policy's and that controller's mean eval return as ref_min_score / ref_max_score (Minari issue #306 reads them from
# D4RL/antmaze/medium-play-v1). Their values cannot be read offline: these stand in for them.
ANTMAZE_STAND_IN_REFERENCE_RETURNS = (2.0, 400.0)

# scripts/adroit/recreate_adroit_{pen,door}.py and scripts/D4RL/adroit/recreate_adroit_{hammer,relocate}.py:
# AdroitHand<Task>-v1, no eval env. The scripts set max_episode_steps per flavour (up to 625), but the hub's
# metadata says 200 for every flavour (its dataset pages; Minari issues #286, which changed pen's from 100, and #303).
ADROIT_MAX_EPISODE_STEPS = 200
# D4RL's d4rl/infos.py REF_MIN_SCORE / REF_MAX_SCORE, which Minari's D4RL imports carry ("only the datasets imported
# from D4RL contain ref_min_score and ref_max_score", minari/utils.py get_normalized_score; issue #303 on pen's).
ADROIT_REFERENCE_RETURNS = {"pen": (96.262799, 3076.8331017826877), "door": (-56.512833, 2880.5693087298737),
                            "hammer": (-274.856578, 12794.134825156867), "relocate": (-6.425911, 4233.877797728884)}

# scripts/D4RL/kitchen/create_franka_dataset.py: FrankaKitchen-v1 with these kwargs, 280 steps (complete) or 450
# (partial, mixed), no eval env, no reference returns.
KITCHEN_TASKS = {"complete": ["microwave", "kettle", "light switch", "slide cabinet"],
                 "partial": ["microwave", "kettle", "light switch", "slide cabinet"],
                 "mixed": ["microwave", "kettle", "bottom burner", "light switch"]}
KITCHEN_MAX_EPISODE_STEPS = {"complete": 280, "partial": 450, "mixed": 450}

# scripts/mujoco/create_dataset.py and make_env.py: gym.make("<Env>-v5"), no eval env; the mujoco/*-v0 datasets
# store no reference returns (Minari issue #323).
_MUJOCO_ENVS = {"hopper": "Hopper-v5", "halfcheetah": "HalfCheetah-v5", "walker2d": "Walker2d-v5", "ant": "Ant-v5"}


@dataclass(frozen=True)
class HubRecipe:
    """What the hub stores for a dataset id: its env spec, its eval env spec (None: evaluation uses the env spec),
    its reference returns (None: it stores none), and the success metric lit_offrl logs for the family
    ("val/success_rate", "val/tasks_completed" or None)."""

    dataset_id: str
    env_spec: Any
    eval_env_spec: Any = None
    reference_returns: tuple[float, float] | None = None
    success_metric: str | None = None

    @property
    def family(self) -> str:
        return "mujoco" if self.dataset_id.startswith("mujoco/") else self.dataset_id.split("/")[1]

    @property
    def evaluation_spec(self) -> Any:
        return self.eval_env_spec if self.eval_env_spec is not None else self.env_spec


def hub_env_spec(env_id: str, max_episode_steps: int | None = None, **kwargs: Any) -> Any:
    """The spec `gym.make(env_id, max_episode_steps=..., **kwargs).spec` records (registered kwargs updated with
    `kwargs`): what a DataCollector around that env stores as the dataset's env spec."""
    registered = gym.spec(env_id)
    steps = registered.max_episode_steps if max_episode_steps is None else max_episode_steps
    return dataclasses.replace(registered, kwargs={**registered.kwargs, **kwargs}, max_episode_steps=steps)


def hub_recipe(dataset_id: str) -> HubRecipe:
    """The `HubRecipe` of a hub id of D4RL/antmaze/*-v1, D4RL/{pen,door,hammer,relocate}/*-v2, D4RL/kitchen/*-v2 or
    mujoco/{hopper,halfcheetah,walker2d,ant}/*-v0."""
    parts = dataset_id.split("/")
    name = parts[-1].rsplit("-v", 1)[0]
    if dataset_id.startswith("D4RL/antmaze/") and dataset_id.endswith("-v1"):
        kwargs: dict[str, Any] = {"continuing_task": True, "reset_target": False}
        if name == "umaze":
            kwargs["maze_map"] = ANTMAZE_UMAZE_DATA_MAP
        env_spec = hub_env_spec(_ANTMAZE_ENVS[name], **kwargs)
        eval_spec = copy.deepcopy(env_spec)
        eval_spec.kwargs["maze_map"] = ANTMAZE_EVAL_MAPS[name.split("-")[0]]
        return HubRecipe(dataset_id, env_spec, eval_spec, ANTMAZE_STAND_IN_REFERENCE_RETURNS, "val/success_rate")
    if parts[0] == "D4RL" and parts[1] in ADROIT_REFERENCE_RETURNS and dataset_id.endswith("-v2"):
        env_spec = hub_env_spec(f"AdroitHand{parts[1].capitalize()}-v1", max_episode_steps=ADROIT_MAX_EPISODE_STEPS)
        return HubRecipe(dataset_id, env_spec, None, ADROIT_REFERENCE_RETURNS[parts[1]], "val/success_rate")
    if dataset_id.startswith("D4RL/kitchen/") and dataset_id.endswith("-v2"):
        env_spec = hub_env_spec("FrankaKitchen-v1", max_episode_steps=KITCHEN_MAX_EPISODE_STEPS[name],
                                remove_task_when_completed=False, terminate_on_tasks_completed=False,
                                tasks_to_complete=list(KITCHEN_TASKS[name]))
        return HubRecipe(dataset_id, env_spec, None, None, "val/tasks_completed")
    if parts[0] == "mujoco" and parts[1] in _MUJOCO_ENVS and dataset_id.endswith("-v0"):
        return HubRecipe(dataset_id, hub_env_spec(_MUJOCO_ENVS[parts[1]]))
    raise ValueError(f"no hub recipe for {dataset_id!r}")


def make_hub_lookalike(dataset_id: str, lengths: Sequence[int] = (6, 4), seed: int = 0) -> BuiltDataset:
    """A local dataset under the hub id `dataset_id` with the hub's env spec, eval env spec and reference returns
    (`hub_recipe`), holding `record_random_episodes(env_spec, lengths, seed)`. Observation and action spaces are
    the env's (dict and nested-dict observations as the hub stores them)."""
    recipe = hub_recipe(dataset_id)
    env = gym.make(recipe.env_spec)
    observation_space, action_space = env.observation_space, env.action_space
    env.close()
    episodes = record_random_episodes(recipe.env_spec, lengths, seed)
    references = {}
    if recipe.reference_returns is not None:
        references = dict(zip(("ref_min_score", "ref_max_score"), recipe.reference_returns))
    return write_dataset(dataset_id, episodes, observation_space, action_space, env=recipe.env_spec,
                         eval_env=recipe.eval_env_spec, **references)
