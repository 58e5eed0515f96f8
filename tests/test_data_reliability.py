"""Broken datasets and environments at the data boundary: each fails with one line that names the dataset, the
file at fault and the fix (or is rebuilt, when a recipe makes it and an interrupted write left it), before any
update; and a fuzz test of what the data layer accepts."""

from __future__ import annotations

import itertools
import json
import socket
import subprocess
import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from lit_offrl import datasets_cli
from lit_offrl.data import minari_io, registry as recipes
from lit_offrl.data.datamodule import OfflineDataModule
from lit_offrl.errors import DatasetError
from minari_fixtures import (Episode, append_empty_episode, eval_env_spec, flat_rows, make_box_dataset, metadata_path,
                             truncate_hdf5, use_minari_root, write_dataset, write_interrupted)

MAZE_ID = "lit-offrl/pointmaze/umaze-v0"
FAKE_RECIPE_ID = "lit-offrl/test/box-v0"  # a recipe id registered by the `fake_recipe` fixture


@pytest.fixture
def root(tmp_path, monkeypatch):
    return use_minari_root(tmp_path / "minari", monkeypatch)


@pytest.fixture
def fake_recipe(monkeypatch):
    """Register FAKE_RECIPE_ID as a recipe that writes a small box dataset atomically (in milliseconds), and
    return the list of its calls."""
    calls = []

    def build(progress: bool = True):
        calls.append(progress)
        return make_box_dataset(FAKE_RECIPE_ID, atomic=True).dataset

    monkeypatch.setitem(recipes.RECIPES, FAKE_RECIPE_ID, build)
    monkeypatch.setitem(recipes.DESCRIPTIONS, FAKE_RECIPE_ID, "a test recipe")
    return calls


def one_error_line(stderr: str, prefix: str) -> str:
    """The single error line of `stderr` (asserting there is exactly one and no traceback)."""
    assert "Traceback" not in stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(prefix), stderr
    return lines[0]


def assert_one_line(exc: pytest.ExceptionInfo, *fragments: str) -> None:
    message = str(exc.value)
    assert "\n" not in message, message
    for fragment in fragments:
        assert fragment in message, (fragment, message)


# ----------------------------------------------------------------------------------------------------------------
# 3. interrupted builds
# ----------------------------------------------------------------------------------------------------------------


def test_a_recipe_build_killed_while_writing_leaves_no_dataset_folder(root, monkeypatch):
    """The pointmaze recipe interrupted inside Minari's write: nothing under the id, nothing listed."""
    from minari.dataset._storages.hdf5_storage import HDF5Storage

    from lit_offrl.recipes.pointmaze import make_pointmaze_dataset

    seen, final = [], root / MAZE_ID

    def killed(self, episodes):
        seen.append(final.exists())
        raise KeyboardInterrupt  # as Ctrl-C in the middle of writing the episodes

    monkeypatch.setattr(HDF5Storage, "update_episodes", killed)
    with pytest.raises(KeyboardInterrupt):
        make_pointmaze_dataset(MAZE_ID, maze="UMaze", steps=300, progress=False)
    assert seen == [False], "while Minari writes, the id's folder does not exist yet"
    assert not final.exists() and minari_io.local_dataset_ids() == []
    assert not list(root.glob(".lit-offrl-tmp-*")), "the temporary folder is removed"


def test_a_killed_builds_temporary_folder_is_hidden_and_removed_by_the_next_build(root, fake_recipe, capsys):
    dead = subprocess.Popen(["true"])
    dead.wait()
    leftover = root / f".lit-offrl-tmp-{dead.pid}-abc"
    (leftover / "lit-offrl" / "test" / "box-v0" / "data").mkdir(parents=True)
    (leftover / "owner").write_text(f"{socket.gethostname()} {dead.pid}\n")
    assert minari_io.local_dataset_ids() == []
    assert datasets_cli.main(["list"]) == 0
    assert "  none" in capsys.readouterr().out
    dataset = recipes.RECIPES[FAKE_RECIPE_ID]()
    assert dataset.total_steps == 9 and not leftover.exists()
    assert minari_io.local_dataset_ids() == [FAKE_RECIPE_ID]


def test_datasets_make_rebuilds_a_half_written_recipe_dataset(root, capsys):
    folder = write_interrupted(MAZE_ID)
    assert datasets_cli.main(["make", MAZE_ID, "--steps", "300"]) == 0
    out = capsys.readouterr().out
    said = [line for line in out.splitlines() if "broken" in line]
    assert len(said) == 1 and "deleting it and building it again" in said[0] and str(folder) in said[0]
    import minari

    assert minari.load_dataset(MAZE_ID).total_steps == 300
    # a complete dataset keeps the existing message
    assert datasets_cli.main(["make", MAZE_ID]) == 2
    line = one_error_line(capsys.readouterr().err, "lit-offrl datasets: error:")
    assert "already exists" in line and f"minari delete {MAZE_ID}" in line


def test_the_data_module_rebuilds_a_half_written_recipe_dataset(root, fake_recipe, capsys):
    write_interrupted(FAKE_RECIPE_ID)
    dm = OfflineDataModule(FAKE_RECIPE_ID, eval_episodes=0)
    dm.setup("fit")
    assert fake_recipe == [True] and len(dm.transitions) == 9
    assert len([line for line in capsys.readouterr().out.splitlines() if "broken" in line]) == 1


def test_datasets_list_marks_broken_folders_with_the_fix(root, fake_recipe, capsys):
    make_box_dataset("test/good-v0")
    write_interrupted(FAKE_RECIPE_ID)
    write_interrupted("test/half-v0")
    assert datasets_cli.main(["list"]) == 0
    out = capsys.readouterr().out
    local = {line.split()[0]: line for line in out.split("Local datasets")[1].splitlines()[1:] if line.strip()}
    assert set(local) == {"test/good-v0", "test/half-v0", FAKE_RECIPE_ID}
    assert "3 episodes, 9 steps" in local["test/good-v0"] and "BROKEN" not in local["test/good-v0"]
    assert "BROKEN" in local[FAKE_RECIPE_ID] and f"lit-offrl datasets make {FAKE_RECIPE_ID}" in local[FAKE_RECIPE_ID]
    assert "BROKEN" in local["test/half-v0"] and f"delete the folder {root / 'test/half-v0'}" in local["test/half-v0"]
    assert "half-written" in local["test/half-v0"]
    recipe_line = next(line for line in out.splitlines() if line[2:].startswith(FAKE_RECIPE_ID))
    assert recipe_line.startswith("!")


# ----------------------------------------------------------------------------------------------------------------
# 8. a truncated main_data.hdf5, 9. an invalid metadata.json
# ----------------------------------------------------------------------------------------------------------------


def _not_json(dataset_id):
    metadata_path(dataset_id).write_text('{"total_episodes": 3, "total_st')
    return metadata_path(dataset_id), "not valid JSON"


def _edit_metadata(dataset_id, change):
    path = metadata_path(dataset_id)
    metadata = json.loads(path.read_text())
    change(metadata)
    path.write_text(json.dumps(metadata))
    return path


def _missing_key(dataset_id):
    return _edit_metadata(dataset_id, lambda m: m.pop("data_format")), "lacks the required key data_format"


def _a_list(dataset_id):
    metadata_path(dataset_id).write_text("[1, 2]")
    return metadata_path(dataset_id), "holds a JSON list"


def _bad_space(dataset_id):
    path = _edit_metadata(dataset_id, lambda m: m.update(observation_space='{"type": "Box", "dtype": "float32"}'))
    return path, "its observation_space cannot be parsed"


def _truncated(dataset_id):
    return truncate_hdf5(dataset_id), "truncated file"


BREAKAGES = {"truncated-hdf5": _truncated, "not-json": _not_json, "missing-key": _missing_key, "json-list": _a_list,
             "bad-space": _bad_space}


@pytest.mark.parametrize("breakage", BREAKAGES)
@pytest.mark.parametrize("dataset_id", ["test/box-v0", FAKE_RECIPE_ID])
def test_a_damaged_dataset_is_one_error_naming_the_file_and_the_fix(root, fake_recipe, breakage, dataset_id, capsys):
    make_box_dataset(dataset_id)
    path, problem = BREAKAGES[breakage](dataset_id)
    fix = (f"lit-offrl datasets make {dataset_id}" if dataset_id == FAKE_RECIPE_ID
           else f"delete the folder {root / dataset_id}")
    with pytest.raises(DatasetError) as error:
        OfflineDataModule(dataset_id, eval_episodes=0)
    assert_one_line(error, f"'{dataset_id}'", str(path), problem, fix)
    assert fake_recipe == [], "a damaged dataset is never deleted on first use"
    assert datasets_cli.main(["show", dataset_id]) == 2
    line = one_error_line(capsys.readouterr().err, "lit-offrl datasets: error:")
    assert str(path) in line and fix in line
    assert datasets_cli.main(["list"]) == 0
    listed = [line for line in capsys.readouterr().out.splitlines() if line.startswith(f"  {dataset_id} ")]
    assert len(listed) == 1 and "BROKEN" in listed[0] and str(path) in listed[0] and fix in listed[0]


def test_loading_a_file_truncated_after_it_was_opened_is_one_error(root):
    dataset = make_box_dataset("test/box-v0").dataset
    path = truncate_hdf5("test/box-v0")
    with pytest.raises(DatasetError) as error:
        minari_io.load(dataset)
    assert_one_line(error, "'test/box-v0'", str(path), "truncated file", "delete the folder")


def test_cli_fit_on_a_damaged_dataset_prints_one_line(root, tmp_path, monkeypatch, capsys):
    from lit_offrl import cli

    make_box_dataset("test/box-v0")
    path, _ = _not_json("test/box-v0")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("sys.argv", ["lit-offrl"])
    with pytest.raises(SystemExit) as exit_:
        cli.main(["fit", "--model", "BC", "--data.dataset_id", "test/box-v0", "--trainer.max_steps", "5"])
    assert exit_.value.code == 2
    line = one_error_line(capsys.readouterr().err, "lit-offrl: error:")
    assert str(path) in line and "not valid JSON" in line


# ----------------------------------------------------------------------------------------------------------------
# 6, 7. an evaluation env that cannot be made or reset fails before the first update
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("entry_point, expected", [
    ("no_such_pkg.envs:Env", ["needs the Python module 'no_such_pkg'", "pip install no-such-pkg"]),
    ("minari_fixtures:ResetFailsEnv", ["cannot be reset: AssertionError", "minari_fixtures.py:"]),
])
def test_an_eval_env_that_cannot_run_fails_before_the_first_update(root, tmp_path, monkeypatch, capsys, entry_point,
                                                                   expected):
    from lit_offrl import cli

    make_box_dataset("test/box-v0", eval_env=eval_env_spec("Broken-v0", entry_point))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("sys.argv", ["lit-offrl"])
    with pytest.raises(SystemExit) as exit_:
        cli.main(["fit", "--model", "BC", "--data.dataset_id", "test/box-v0", "--data.eval_episodes", "2",
                  "--data.batch_size", "4", "--trainer.max_steps", "40", "--trainer.val_check_interval", "20",
                  "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
                  "--trainer.logger", "false"])
    assert exit_.value.code == 2
    line = one_error_line(capsys.readouterr().err, "lit-offrl: error:")
    for fragment in ["the evaluation env 'Broken-v0' of dataset 'test/box-v0'", "--data.eval_episodes 0", *expected]:
        assert fragment in line, (fragment, line)
    assert not list(tmp_path.rglob("*.ckpt")), "no update ran, so no checkpoint was written"


def test_the_eval_env_probe_makes_and_resets_once(root, monkeypatch):
    make_box_dataset("test/box-v0", eval_env=eval_env_spec("Fine-v0", "minari_fixtures:ResetFailsEnv"))
    dm = OfflineDataModule("test/box-v0", eval_episodes=2)
    made = []
    monkeypatch.setattr(dm, "make_eval_env", lambda: made.append(1) or _Resettable())
    dm.setup("fit")
    dm.setup("validate")
    assert made == [1] and len(dm.transitions) == 9
    OfflineDataModule("test/box-v0", eval_episodes=0).setup("fit")  # no probe without evaluation


class _Resettable(gym.Env):
    observation_space = spaces.Box(-1, 1, (3,))
    action_space = spaces.Box(-1, 1, (2,))

    def reset(self, *, seed=None, options=None):
        assert seed == 1_000_000
        return np.zeros(3, np.float32), {}


# ----------------------------------------------------------------------------------------------------------------
# fuzz: random small datasets load exactly or fail with one DatasetError line
# ----------------------------------------------------------------------------------------------------------------

FUZZ_EXAMPLES = 60
DEFECTS = ["nan_obs", "inf_last_obs", "nan_action", "inf_reward", "short_obs", "wide_obs", "bad_discrete"]
_fuzz_ids = itertools.count()
_fuzz_runs = []


def _leaf_spaces():
    box = st.builds(lambda shape, dtype: spaces.Box(-np.inf, np.inf, shape, dtype),
                    st.sampled_from([(1,), (3,), (2, 2)]), st.sampled_from([np.float32, np.float64]))
    bounded_int = st.builds(lambda n: spaces.Box(0, 9, (n,), np.int64), st.integers(1, 3))
    discrete = st.builds(lambda n, start: spaces.Discrete(n, start=start), st.integers(2, 4), st.integers(-1, 1))
    return st.one_of(box, bounded_int, discrete)


def _observation_spaces():
    dict_of = lambda children: st.dictionaries(st.sampled_from(["a", "b", "goal", "obs"]), children,  # noqa: E731
                                               min_size=1, max_size=3).map(spaces.Dict)
    box = st.builds(lambda shape: spaces.Box(-np.inf, np.inf, shape, np.float32),
                    st.sampled_from([(1,), (4,), (2, 3)]))
    nested = st.builds(lambda inner, rest: spaces.Dict({"inner": inner, **rest.spaces}),
                       dict_of(_leaf_spaces()), dict_of(_leaf_spaces()))
    return st.one_of(box, dict_of(_leaf_spaces()), nested)


def _action_spaces():
    def build(shape, kind):
        size = int(np.prod(shape))
        if kind == "unbounded":
            return spaces.Box(-np.inf, np.inf, shape, np.float32)
        low = np.full(size, -1.0, np.float32)
        high = np.full(size, 2.0, np.float32)
        if kind == "degenerate":  # a dimension whose bounds are equal (one fixed value)
            high[0] = low[0]
        return spaces.Box(low.reshape(shape), high.reshape(shape), shape, np.float32)

    return st.builds(build, st.sampled_from([(), (1,), (3,), (2, 2)]),
                     st.sampled_from(["bounded", "bounded", "unbounded", "degenerate"]))


def _sample(space, rng, count):
    """`count` valid observations of `space` (a dict of arrays for Dict), moderate values."""
    if isinstance(space, spaces.Dict):
        return {key: _sample(sub, rng, count) for key, sub in space.spaces.items()}
    if isinstance(space, spaces.Discrete):
        return rng.integers(space.start, space.start + space.n, size=count).astype(np.int64)
    if np.issubdtype(space.dtype, np.integer):
        return rng.integers(0, 10, size=(count, *space.shape)).astype(space.dtype)
    return (rng.normal(size=(count, *space.shape)) * 10).astype(space.dtype)


def _leaves(space, observations, holder, key):
    """(sub-space, dict holding the array, its key) of every array of an episode's (nested) observations."""
    if isinstance(space, spaces.Dict):
        for name, sub in space.spaces.items():
            yield from _leaves(sub, observations[name], observations, name)
    else:
        yield space, holder, key


@st.composite
def fuzz_cases(draw):
    obs_space, action_space = draw(_observation_spaces()), draw(_action_spaces())
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    lengths = [] if draw(st.integers(0, 9)) == 0 else draw(st.lists(st.integers(1, 6), min_size=1, max_size=5))
    episodes = []
    for length in lengths:
        low = np.where(np.isfinite(action_space.low), action_space.low, -3.0)
        high = np.where(np.isfinite(action_space.high), action_space.high, 3.0)
        actions = rng.uniform(low, high, size=(length, *action_space.shape)).astype(np.float32)
        episodes.append(Episode(
            _sample(obs_space, rng, length + 1), actions, rng.normal(size=length),
            np.array(draw(st.lists(st.booleans(), min_size=length, max_size=length)), dtype=bool),
            np.array(draw(st.lists(st.booleans(), min_size=length, max_size=length)), dtype=bool)))
    # Drawn from the seeded generator, uniformly (Hypothesis's own draws favour the first choice heavily).
    defect = None if rng.random() < 0.4 else str(rng.choice(DEFECTS))
    empty_episode = bool(rng.random() < 0.25)
    return obs_space, action_space, episodes, defect, empty_episode


def _apply_defect(defect, obs_space, episodes):
    """Corrupt the last episode in place; returns whether the data is now invalid (False where this dataset has
    nothing the defect applies to, e.g. no Discrete sub-space for "bad_discrete")."""
    if defect is None or not episodes:
        return False
    episode = episodes[-1]
    holder = {"root": episode.observations}
    leaves = list(_leaves(obs_space, episode.observations, holder, "root"))
    floating = [(space, h, k) for space, h, k in leaves
                if isinstance(space, spaces.Box) and np.issubdtype(h[k].dtype, np.floating)]
    if defect in ("nan_obs", "inf_last_obs", "wide_obs") and not floating:
        return False
    if defect == "nan_obs":
        _, h, k = floating[-1]
        h[k][0] = np.nan
    elif defect == "inf_last_obs":  # only next_observations sees it
        _, h, k = floating[0]
        h[k][-1] = np.inf
    elif defect == "wide_obs":  # one feature more than the space says
        _, h, k = floating[0]
        flat = h[k].reshape(len(h[k]), -1)
        h[k] = np.concatenate([flat, flat[:, :1]], axis=1)
    elif defect == "nan_action":
        episode.actions.reshape(len(episode), -1)[0, 0] = np.nan
    elif defect == "inf_reward":
        episode.rewards[-1] = -np.inf
    elif defect == "short_obs":  # T observations instead of T + 1, in every sub-space
        holder["root"] = _cut(episode.observations)
    elif defect == "bad_discrete":
        discrete = [(space, h, k) for space, h, k in leaves if isinstance(space, spaces.Discrete)]
        if not discrete:
            return False
        space, h, k = discrete[0]
        h[k][0] = space.start - 1  # one below the range: a negative index would wrap around
    episode.observations = holder["root"]
    return True


def _first(observations):
    if isinstance(observations, dict):
        return {key: _first(value) for key, value in observations.items()}
    return observations[0]


def _cut(observations):
    if isinstance(observations, dict):
        return {key: _cut(value) for key, value in observations.items()}
    return observations[:-1]


@pytest.fixture(scope="module")
def fuzz_root(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz-minari")


@settings(max_examples=FUZZ_EXAMPLES, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(case=fuzz_cases())
def test_fuzz_random_datasets_load_exactly_or_fail_with_one_dataset_error(fuzz_root, monkeypatch, case):
    obs_space, action_space, episodes, defect, empty_episode = case
    use_minari_root(fuzz_root, monkeypatch)
    dataset_id = f"fuzz/case{next(_fuzz_ids)}-v0"
    invalid = _apply_defect(defect, obs_space, episodes)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        write_dataset(dataset_id, episodes, obs_space, action_space)
    if empty_episode:
        append_empty_episode(dataset_id, _first(_sample(obs_space, np.random.default_rng(0), 1)), action_space.shape)
    _fuzz_runs.append(dataset_id)
    expected_error = invalid or not episodes
    nested = any(isinstance(sub, spaces.Dict) for sub in getattr(obs_space, "spaces", {}).values())
    event(f"observations: {type(obs_space).__name__}{' (nested)' if nested else ''}")
    bounds = ("unbounded" if not np.isfinite(action_space.low).all()
              else "low == high somewhere" if (action_space.low >= action_space.high).any() else "bounded")
    event(f"actions: {action_space.shape}, {bounds}")
    event(f"defect: {defect if invalid else 'none'}{', no episodes' if not episodes else ''}")
    event(f"an empty episode: {empty_episode}")
    try:
        data = minari_io.load(minari_io.resolve(dataset_id, build=False))
        dm = OfflineDataModule(dataset_id, batch_size=4, eval_episodes=0)
        dm.setup("fit")
    except DatasetError as exc:
        assert "\n" not in str(exc) and f"'{dataset_id}'" in str(exc), str(exc)
        assert expected_error, f"a valid dataset was rejected: {exc}"
        return
    assert not expected_error, f"{defect} was not detected"
    lengths = [len(e) for e in episodes]
    ends = np.cumsum(lengths)
    np.testing.assert_array_equal(data.episode_ends, ends)
    np.testing.assert_array_equal(data.episode_starts, ends - lengths)
    expected_obs = [flat_rows(obs_space, e.observations, len(e) + 1) for e in episodes]
    np.testing.assert_array_equal(data.observations, np.concatenate([o[:-1] for o in expected_obs]))
    # next_obs is the same episode's next observation, never the next episode's first
    np.testing.assert_array_equal(data.next_observations, np.concatenate([o[1:] for o in expected_obs]))
    np.testing.assert_array_equal(data.terminals, np.concatenate([e.terminations for e in episodes]).astype(np.float32))
    np.testing.assert_array_equal(data.timeouts, np.concatenate([e.truncations for e in episodes]).astype(np.float32))
    transitions = dm.transitions
    assert len(transitions) == ends[-1]
    for name in ("obs", "action", "reward", "next_obs", "terminal"):
        assert bool(torch.isfinite(getattr(transitions, name)).all()), f"non-finite {name} in the transitions"
    assert float(transitions.action.abs().max()) <= 1.0
    np.testing.assert_array_equal(transitions.terminal.numpy(), data.terminals)


def test_fuzz_ran_every_example():
    """Records the fuzz test's case count (it runs right before this one in file order)."""
    if not _fuzz_runs:
        pytest.skip("the fuzz test did not run in this session")
    assert len(_fuzz_runs) >= FUZZ_EXAMPLES * 0.9, len(_fuzz_runs)
