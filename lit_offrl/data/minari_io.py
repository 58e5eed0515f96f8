"""Minari dataset id -> one set of flat float32 arrays.

`resolve(dataset_id)` finds a dataset locally, builds it from a project recipe, or asks Minari to download
it, and fails with one clear `DatasetError` otherwise. `load(dataset)` flattens every episode once:
dict observations (PointMaze, AntMaze, FrankaKitchen) are flattened the way `gymnasium.spaces.flatten`
does (sub-spaces in the space's key order, goals included), Minari's T+1 observations become
observations / next_observations, and `terminals` are terminations only (a truncation is not a terminal).

Local datasets are checked before they are opened (`check_local`: metadata.json readable and complete, the HDF5
file not truncated); a broken one raises one `DatasetError` line naming the file and the fix, and one that an
interrupted write left is rebuilt when a recipe makes it. Recipes write through `create_dataset_atomically`, so a
build killed halfway leaves no dataset folder at all.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from gymnasium import spaces

from lit_offrl.errors import DatasetError, one_line


@dataclass
class OfflineData:
    """Every transition of a dataset as flat arrays (N = number of transitions, E = number of episodes)."""

    observations: np.ndarray          # (N, obs_dim) float32
    actions: np.ndarray               # (N, action_dim) float32, in the dataset's own action bounds
    rewards: np.ndarray               # (N,) float32
    next_observations: np.ndarray     # (N, obs_dim) float32
    terminals: np.ndarray             # (N,) float32, 1.0 where the episode terminated (not truncated)
    timeouts: np.ndarray              # (N,) float32, 1.0 where the episode was truncated
    episode_starts: np.ndarray        # (E,) int64, index of each episode's first transition
    episode_ends: np.ndarray          # (E,) int64, one past each episode's last transition
    observation_space: spaces.Space = field(repr=False)
    action_space: spaces.Box = field(repr=False)
    dataset_id: str = ""
    eval_env_spec: Any = field(default=None, repr=False)
    ref_min_score: float | None = None
    ref_max_score: float | None = None

    @property
    def episode_returns(self) -> np.ndarray:
        return np.add.reduceat(self.rewards.astype(np.float64), self.episode_starts) if len(self.rewards) else np.zeros(0)

    @property
    def obs_dim(self) -> int:
        return self.observations.shape[1]

    @property
    def action_dim(self) -> int:
        return self.actions.shape[1]


def local_root() -> Path:
    """The folder Minari reads local datasets from (MINARI_DATASETS_PATH or ~/.minari/datasets)."""
    from minari.storage import get_dataset_path

    return Path(get_dataset_path())


def dataset_folder(dataset_id: str) -> Path:
    """Where `dataset_id` lives in the local root (whether or not it is there)."""
    return local_root() / dataset_id


def local_dataset_ids() -> list[str]:
    """Every dataset folder in the local root, broken ones included (see `check_local`).

    Minari's own rule: a non-hidden folder holding a `data/` folder is a dataset, and its id is its path under
    the root; hidden folders (lit_offrl's temporary build folders and caches) are skipped. Unlike
    `minari.list_local_datasets`, nothing is left out because its metadata cannot be read.
    """
    root = local_root()
    found: list[str] = []

    def visit(folder: Path) -> None:
        if (folder / "data").is_dir():
            found.append(folder.relative_to(root).as_posix())
            return
        for child in sorted(folder.iterdir()):
            if child.is_dir() and not child.name.startswith("."):
                visit(child)

    if root.is_dir():
        visit(root)
    return sorted(i for i in found if i)


def is_local(dataset_id: str) -> bool:
    """Whether `dataset_id` is in the local root (complete or not: `check_local` says which)."""
    return (dataset_folder(dataset_id) / "data").is_dir()


# ------------------------------------------------------------------------------------------ local health
# Keys Minari needs to open a dataset (MinariStorage.read, MinariDataset.__init__) and the keys lit_offrl reads.
# Minari writes the metadata first with 0 episodes and sets total_episodes, total_steps and dataset_size together
# after the last episode: 0 episodes and no dataset_size is what a write that never finished leaves.
_REQUIRED_KEYS = ("dataset_id", "data_format", "minari_version", "total_episodes", "total_steps")


@dataclass(frozen=True)
class Damage:
    """What is wrong with a local dataset folder.

    `path` is the file (or folder) at fault, `problem` says what is wrong with it, and `interrupted` is True
    when the folder is what an interrupted write leaves (its metadata says the write never finished): such a
    folder holds nothing worth keeping, so a recipe id is rebuilt over it on first use without asking.
    """

    path: Path
    problem: str
    interrupted: bool = False


def check_local(dataset_id: str) -> Damage | None:
    """What is wrong with the local folder of `dataset_id`, or None if it is absent or looks complete.

    Cheap (reads metadata.json and opens main_data.hdf5 without reading episodes): checks that metadata.json
    is a JSON object with the keys Minari needs, that the write finished (`dataset_size` present), and that the
    HDF5 file opens (a truncated file does not: HDF5 compares its size with the size its superblock records)
    and holds as many episodes as the metadata says.
    """
    folder = dataset_folder(dataset_id)
    if not folder.exists():
        return None
    data = folder / "data"
    if not data.is_dir():
        if any(child.is_dir() for child in folder.iterdir()):
            return None  # a namespace (or someone else's folder), not a dataset: never reported, never deleted
        return Damage(folder, "has no data/ subfolder", interrupted=not any(folder.iterdir()))
    metadata_path = data / "metadata.json"
    hdf5_path = data / "main_data.hdf5"
    if not metadata_path.is_file():
        return Damage(metadata_path, "missing",
                      interrupted=not hdf5_path.exists() or hdf5_path.stat().st_size == 0)
    try:
        metadata = json.loads(metadata_path.read_text())
    except (OSError, UnicodeDecodeError) as exc:
        return Damage(metadata_path, f"cannot be read ({type(exc).__name__}: {_reason(exc)})")
    except json.JSONDecodeError as exc:
        return Damage(metadata_path, f"not valid JSON ({exc.msg} at line {exc.lineno} "
                                     f"column {exc.colno})")
    if not isinstance(metadata, dict):
        return Damage(metadata_path, f"holds a JSON {type(metadata).__name__}, not an object")
    if "dataset_size" not in metadata and metadata.get("total_episodes", 0) == 0:
        return Damage(metadata_path, "half-written: it records 0 episodes and no dataset_size (the write that made "
                                     "it never finished)", interrupted=True)
    missing = [key for key in _REQUIRED_KEYS if key not in metadata]
    if not ("observation_space" in metadata and "action_space" in metadata) and "env_spec" not in metadata:
        missing.append("observation_space/action_space")
    if missing:
        return Damage(metadata_path, f"lacks the required key{'s' * (len(missing) > 1)} "
                                     f"{', '.join(missing)}")
    for key in ("total_episodes", "total_steps"):
        value = metadata[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            return Damage(metadata_path, f"has {key} = {value!r}, not a count")
    from minari.serialization import deserialize_space

    for key in ("observation_space", "action_space"):
        if key in metadata:
            try:
                deserialize_space(metadata[key])
            except Exception as exc:  # Minari raises KeyError, TypeError, ValueError, ... for a bad description
                return Damage(metadata_path, f"its {key} cannot be parsed ({type(exc).__name__}: {_reason(exc)})")
    if metadata["dataset_id"] != dataset_id:
        return Damage(metadata_path, f"says it is dataset {metadata['dataset_id']!r}, but it lies in "
                                     f"the folder of {dataset_id!r}")
    if metadata["data_format"] != "hdf5":
        return None  # Minari's arrow storage: no cheap check here; loading reports what fails
    if not hdf5_path.is_file():
        return Damage(hdf5_path, "missing")
    import h5py

    try:
        with h5py.File(hdf5_path, "r") as file:
            stored = sum(1 for key in file.keys() if key.startswith("episode_"))
    except Exception as exc:  # h5py raises OSError for a truncated or foreign file
        return Damage(hdf5_path, f"cannot be opened ({_reason(exc)})")
    if stored != metadata["total_episodes"]:
        return Damage(hdf5_path, f"holds {stored} episodes but metadata.json says "
                                 f"{metadata['total_episodes']}")
    return None


def repair_hint(dataset_id: str) -> str:
    """What to do about a broken local dataset: rebuild a recipe id, delete and re-download anything else."""
    from lit_offrl.data import registry

    if dataset_id in registry.RECIPES:
        return f"rebuild it with `lit-offrl datasets make {dataset_id}` (it replaces the broken folder)"
    return (f"delete the folder {dataset_folder(dataset_id)} and download or write the dataset again "
            f"(`minari download {dataset_id}` for a dataset on Minari's hub)")


def broken_message(dataset_id: str, damage: Damage) -> str:
    """One line naming the dataset, the file at fault, what is wrong and the fix."""
    return f"dataset '{dataset_id}' is broken: {damage.path}: {damage.problem}. Fix: {repair_hint(dataset_id)}."


def remove_broken(dataset_id: str, damage: Damage) -> None:
    """Delete the broken folder of `dataset_id`, saying so in one line."""
    folder = dataset_folder(dataset_id)
    print(f"lit_offrl: '{dataset_id}' in {folder} is broken ({damage.path.name}: {damage.problem}); deleting it and "
          f"building it again", flush=True)
    shutil.rmtree(folder)


def _reason(exc: BaseException) -> str:
    return one_line(exc, 300, empty="no message")


def open_local(dataset_id: str):
    """`minari.load_dataset(dataset_id)` of a local dataset, any failure as one `DatasetError`."""
    import minari

    damage = check_local(dataset_id)
    if damage is not None:
        raise DatasetError(broken_message(dataset_id, damage))
    try:
        return minari.load_dataset(dataset_id)
    except Exception as exc:  # spaces or env specs Minari cannot parse, an unsupported Minari version, ...
        damage = Damage(dataset_folder(dataset_id) / "data" / "metadata.json",
                        f"Minari cannot open it ({type(exc).__name__}: {_reason(exc)})")
        raise DatasetError(broken_message(dataset_id, damage)) from None


# ------------------------------------------------------------------------------------------ atomic writes
TEMPORARY_PREFIX = ".lit-offrl-tmp-"


def create_dataset_atomically(dataset_id: str, **kwargs: Any):
    """`minari.create_dataset_from_buffers(dataset_id, **kwargs)`, all or nothing; returns the dataset as loaded
    from its final folder.

    Minari writes into `<root>/<dataset_id>` as it goes, so a build killed halfway leaves a folder that looks
    like a dataset and is not. Here Minari writes into a hidden temporary root inside the local root (same
    filesystem; Minari reads MINARI_DATASETS_PATH on every call, and skips hidden folders when listing), and the
    finished folder is renamed into place in one step. A killed build leaves only the hidden folder, which the
    next build removes. Raises `FileExistsError` if `dataset_id` exists already (before or after the write).
    Not thread-safe: MINARI_DATASETS_PATH is switched for the duration of the write.
    """
    import minari

    root = local_root()
    final = root / dataset_id
    if final.exists():
        raise FileExistsError(f"Minari dataset {dataset_id!r} already exists at {final}")
    _remove_stale_temporaries(root)
    temporary = Path(tempfile.mkdtemp(prefix=f"{TEMPORARY_PREFIX}{os.getpid()}-", dir=root))
    try:
        (temporary / "owner").write_text(f"{socket.gethostname()} {os.getpid()}\n")
        with _minari_root(temporary):
            minari.create_dataset_from_buffers(dataset_id, **kwargs)
        _create_namespaces(dataset_id)
        final.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.rename(temporary / dataset_id, final)
        except OSError as exc:
            if final.exists():  # made by someone else meanwhile
                raise FileExistsError(f"Minari dataset {dataset_id!r} already exists at {final}") from exc
            raise
    finally:
        shutil.rmtree(temporary, ignore_errors=True)
    return minari.load_dataset(dataset_id)


@contextlib.contextmanager
def _minari_root(path: Path):
    old = os.environ.get("MINARI_DATASETS_PATH")
    os.environ["MINARI_DATASETS_PATH"] = str(path)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("MINARI_DATASETS_PATH", None)
        else:
            os.environ["MINARI_DATASETS_PATH"] = old


def _create_namespaces(dataset_id: str) -> None:
    """Create the dataset's namespace in the local root, as `create_dataset_from_buffers` does."""
    from minari.namespace import create_namespace, list_local_namespaces
    from minari.storage.local import parse_dataset_id

    namespace = parse_dataset_id(dataset_id)[0]
    if namespace is not None and namespace not in list_local_namespaces():
        create_namespace(namespace)


def _remove_stale_temporaries(root: Path) -> None:
    """Remove the temporary folders of builds on this host whose process is gone (killed halfway)."""
    host = socket.gethostname()
    for folder in root.glob(f"{TEMPORARY_PREFIX}*"):
        try:
            owner_host, pid = (folder / "owner").read_text().split()
            if owner_host != host:
                continue
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(folder, ignore_errors=True)
        except (OSError, ValueError):  # no owner file yet, another user's process, unparsable: leave it
            continue


def resolve(dataset_id: str, build: bool = True, progress: bool = True):
    """Return the `MinariDataset` for `dataset_id`, building or downloading it if it is not local.

    Order: a local dataset; an id registered by a recipe (lit_offrl.data.registry) built on first use; Minari's download.
    A local folder that an interrupted write left (`check_local`) is deleted and rebuilt when a recipe makes the
    id; any other broken local dataset raises a `DatasetError` naming the file and the fix. Raises `DatasetError`
    naming the id, the local root and the local datasets when none of the sources works.
    """
    import minari
    from minari.storage.local import parse_dataset_id

    try:
        parse_dataset_id(dataset_id)
    except (ValueError, TypeError):  # Minari raises TypeError for an id without -vN
        raise DatasetError(f"'{dataset_id}' is not a Minari dataset id: ids look like 'namespace/name-vN' "
                           f"(e.g. 'lit-offrl/pointmaze/umaze-v0'); the version suffix is required.") from None
    from lit_offrl.data import registry

    buildable = build and dataset_id in registry.RECIPES
    if is_local(dataset_id) or dataset_folder(dataset_id).exists():
        damage = check_local(dataset_id)
        if damage is None:
            return open_local(dataset_id)
        if not (damage.interrupted and buildable):
            raise DatasetError(broken_message(dataset_id, damage))
        remove_broken(dataset_id, damage)
    if buildable:
        # Every DDP rank (srun, torchrun) makes its data module: one builds, the others wait and then load it.
        with _build_lock(dataset_id):
            if is_local(dataset_id) and check_local(dataset_id) is None:
                return open_local(dataset_id)
            return registry.build(dataset_id, progress=progress)
    print(f"lit_offrl: '{dataset_id}' is not local; trying Minari's download...", flush=True)
    try:
        minari.download_dataset(dataset_id)
        return minari.load_dataset(dataset_id)
    except Exception as exc:  # no network, unknown remote id, hub error: all end the same way for the user
        local = local_dataset_ids()
        raise DatasetError(
            f"Minari dataset '{dataset_id}' is not available.\n"
            f"  It is not in the local root {local_root()} (set MINARI_DATASETS_PATH to use another folder),\n"
            f"  no lit_offrl recipe makes it, and downloading it failed ({type(exc).__name__}: {exc}).\n"
            f"  Local datasets: {', '.join(local) if local else 'none'}.\n"
            f"  Datasets lit_offrl can build here: {', '.join(sorted(registry.RECIPES))}."
        ) from None


@contextlib.contextmanager
def _build_lock(dataset_id: str):
    """An exclusive lock (flock on a file in the Minari root) while `dataset_id` is built, so processes that need
    the same missing dataset build it once."""
    root = local_root()
    root.mkdir(parents=True, exist_ok=True)
    with open(root / f".lit-offrl-build-{dataset_id.replace('/', '__')}.lock", "w") as lock:
        try:
            import fcntl
        except ImportError:  # not POSIX: no lock, as before
            yield
            return
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"lit_offrl: waiting for another process that is building '{dataset_id}'...", flush=True)
            fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def observation_dim(space: spaces.Space) -> int:
    """The flat size of an observation space, or a `DatasetError` if lit_offrl cannot flatten it."""
    def check(sub: spaces.Space) -> None:
        if isinstance(sub, spaces.Dict):
            for part in sub.spaces.values():
                check(part)
        elif isinstance(sub, spaces.Tuple):
            for part in sub.spaces:
                check(part)
        elif not isinstance(sub, (spaces.Box, spaces.Discrete)):
            raise DatasetError(f"observation space {space} is not supported: lit_offrl flattens Box, Dict, Tuple "
                               f"and Discrete observations (this one holds a {type(sub).__name__}).")

    check(space)
    return int(spaces.flatdim(space))


def flatten_batch(space: spaces.Space, x: Any) -> np.ndarray:
    """Flatten a batch of observations (leading axis = time) exactly as `gymnasium.spaces.flatten` flattens one."""
    if isinstance(space, spaces.Box):
        x = np.asarray(x)
        return x.reshape(x.shape[0], -1).astype(np.float32, copy=False)
    if isinstance(space, spaces.Dict):
        return np.concatenate([flatten_batch(sub, x[key]) for key, sub in space.spaces.items()], axis=1)
    if isinstance(space, spaces.Tuple):
        return np.concatenate([flatten_batch(sub, part) for sub, part in zip(space.spaces, x)], axis=1)
    if isinstance(space, spaces.Discrete):
        x = np.asarray(x, dtype=np.int64).reshape(-1) - int(space.start)
        if x.size and (x.min() < 0 or x.max() >= int(space.n)):  # a negative index would wrap around silently
            raise ValueError(f"a value outside {space}")
        out = np.zeros((x.shape[0], int(space.n)), dtype=np.float32)
        out[np.arange(x.shape[0]), x] = 1.0
        return out
    raise DatasetError(f"observation space {space} is not supported: lit_offrl flattens Box, Dict, Tuple and "
                       f"Discrete observations.")


def box_action_space(dataset) -> spaces.Box:
    """The dataset's action space, or a `DatasetError` if it is not continuous (Box)."""
    action_space = dataset.action_space
    if not isinstance(action_space, spaces.Box):
        raise DatasetError(f"dataset '{dataset.spec.dataset_id}' has a {type(action_space).__name__} action space "
                           f"({action_space}); lit_offrl's algorithms need continuous (Box) actions. Use a dataset "
                           f"with Box actions.")
    return action_space


def load(dataset) -> OfflineData:
    """Flatten a `MinariDataset` into `OfflineData`, rejecting data that cannot be trained on."""
    dataset_id = dataset.spec.dataset_id
    action_space = box_action_space(dataset)
    if dataset.total_steps == 0 or dataset.total_episodes == 0:
        raise DatasetError(f"dataset '{dataset_id}' is empty ({dataset.total_episodes} episodes, "
                           f"{dataset.total_steps} steps): rebuild it or pick another id.")
    obs_space = dataset.observation_space
    # Preallocated and filled episode by episode: peak memory is the final arrays plus one episode, not twice
    # the arrays (a list of per-episode pieces followed by np.concatenate).
    total, obs_dim = int(dataset.total_steps), observation_dim(obs_space)
    action_dim = int(np.prod(action_space.shape))
    obs, next_obs = np.empty((total, obs_dim), np.float32), np.empty((total, obs_dim), np.float32)
    actions, rewards = np.empty((total, action_dim), np.float32), np.empty(total, np.float32)
    terms, truncs = np.empty(total, np.float32), np.empty(total, np.float32)
    lengths, filled = [], 0
    for number, episode in enumerate(_episodes_in_chunks(dataset)):
        steps = len(episode.rewards)
        if steps == 0:
            continue
        if filled + steps > total:
            raise DatasetError(f"dataset '{dataset_id}' holds more steps than its metadata says ({total}): "
                               f"{repair_hint(dataset_id)}.")
        flat = _episode_observations(dataset_id, number, obs_space, episode.observations, steps, obs_dim)
        window = slice(filled, filled + steps)
        obs[window], next_obs[window] = flat[:steps], flat[1:steps + 1]
        actions[window] = _episode_field(dataset_id, number, "actions", episode.actions, steps, action_dim)
        rewards[window] = _episode_field(dataset_id, number, "rewards", episode.rewards, steps)
        terms[window] = _episode_field(dataset_id, number, "terminations", episode.terminations, steps)
        truncs[window] = _episode_field(dataset_id, number, "truncations", episode.truncations, steps)
        lengths.append(steps)
        filled += steps
    if not lengths:
        raise DatasetError(f"dataset '{dataset_id}' has no transitions: every episode is empty.")
    lengths = np.array(lengths, dtype=np.int64)
    ends = np.cumsum(lengths)
    data = OfflineData(
        observations=obs[:filled], next_observations=next_obs[:filled], actions=actions[:filled],
        rewards=rewards[:filled], terminals=terms[:filled], timeouts=truncs[:filled],
        episode_starts=ends - lengths, episode_ends=ends, observation_space=obs_space, action_space=action_space,
        dataset_id=dataset_id, eval_env_spec=eval_env_spec(dataset),
        ref_min_score=reference_score(dataset, "ref_min_score"), ref_max_score=reference_score(dataset, "ref_max_score"))
    for name in ("observations", "actions", "rewards", "next_observations"):
        values = getattr(data, name)
        if not np.isfinite(values).all():
            bad = np.argwhere(~np.isfinite(values.reshape(len(values), -1)).all(axis=1)).ravel()
            raise DatasetError(f"dataset '{dataset_id}' has NaN or infinite {name} in {len(bad)} transitions "
                               f"(first at transition {bad[0]}): clean or rebuild the dataset.")
    return data


EPISODES_PER_READ = 256


def _episodes_in_chunks(dataset):
    """`dataset.iterate_episodes()`, `EPISODES_PER_READ` episodes per call. Minari's HDF5 storage keeps the file open for a
    whole call, and HDF5 caches the metadata of every episode group it opened until the file closes (about 64 KB
    each): reading the 3,334 episodes of a 1M-step PointMaze dataset in one call held 214 MB at the end, in
    chunks (file reopened, freed pages handed back) 15 MB, at the same speed.

    A file that cannot be read (truncated, an episode group missing or malformed) raises one `DatasetError`
    naming the file and the fix."""
    indices = dataset.episode_indices
    dataset_id = dataset.spec.dataset_id
    for start in range(0, len(indices), EPISODES_PER_READ):
        episodes = iter(dataset.iterate_episodes(indices[start:start + EPISODES_PER_READ]))
        while True:
            try:
                episode = next(episodes)
            except StopIteration:
                break
            except (OSError, KeyError, ValueError, TypeError, AssertionError) as exc:  # h5py and Minari's decoding
                data_path = Path(dataset.storage.data_path)
                hdf5_path = data_path / "main_data.hdf5"
                damage = Damage(hdf5_path if hdf5_path.exists() else data_path,
                                f"its episodes cannot be read ({type(exc).__name__}: {_reason(exc)})")
                raise DatasetError(broken_message(dataset_id, damage)) from None
            yield episode
        _release_freed_memory()


def _episode_observations(dataset_id: str, number: int, space: spaces.Space, observations: Any, steps: int,
                          obs_dim: int) -> np.ndarray:
    """An episode's T + 1 observations flattened, or a `DatasetError` saying how they do not fit the space."""
    try:
        flat = flatten_batch(space, observations)
    except DatasetError:
        raise
    except (KeyError, IndexError, ValueError, TypeError) as exc:
        raise DatasetError(f"dataset '{dataset_id}': the observations of episode {number} do not match its "
                           f"observation space {space} ({type(exc).__name__}: {_reason(exc)}): "
                           f"{repair_hint(dataset_id)}.") from None
    if flat.shape != (steps + 1, obs_dim):
        raise DatasetError(f"dataset '{dataset_id}': episode {number} has {steps} steps, so Minari stores "
                           f"{steps + 1} observations of {obs_dim} features, but it holds {flat.shape[0]} of "
                           f"{flat.shape[1]}: {repair_hint(dataset_id)}.")
    return flat


def _episode_field(dataset_id: str, number: int, name: str, values: Any, steps: int,
                   width: int | None = None) -> np.ndarray:
    """One per-step field of an episode as float32 (steps,) or (steps, width), or a `DatasetError`."""
    try:
        array = np.asarray(values, dtype=np.float32)
    except (ValueError, TypeError) as exc:
        raise DatasetError(f"dataset '{dataset_id}': the {name} of episode {number} are not numbers "
                           f"({_reason(exc)}): {repair_hint(dataset_id)}.") from None
    shape = (steps,) if width is None else (steps, width)
    if array.size != int(np.prod(shape)) or (len(array) if array.ndim else 1) != steps:
        raise DatasetError(f"dataset '{dataset_id}': episode {number} has {steps} steps but {name} of shape "
                           f"{array.shape} (expected {shape}): {repair_hint(dataset_id)}.")
    return array.reshape(shape)


def _release_freed_memory() -> None:
    """Hand the heap's free pages back to the OS (glibc `malloc_trim`; a no-op elsewhere)."""
    global _malloc_trim
    if _malloc_trim is None:
        try:
            import ctypes

            _malloc_trim = ctypes.CDLL("libc.so.6").malloc_trim
        except (OSError, AttributeError):
            _malloc_trim = False
    if _malloc_trim:
        _malloc_trim(0)


_malloc_trim = None


def reference_score(dataset, key: str) -> float | None:
    """`ref_min_score` / `ref_max_score` from the dataset's metadata, or None."""
    value = dataset.storage.metadata.get(key)
    return None if value is None else float(value)


def eval_env_spec(dataset):
    """The evaluation env spec (what `recover_environment(eval_env=True)` makes), else the data env's spec."""
    return getattr(dataset, "_eval_env_spec", None) or dataset.env_spec
