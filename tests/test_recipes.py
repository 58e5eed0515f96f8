"""Dataset recipes: the maze2d flavour of the PointMaze recipe and the `lit-offrl datasets` command."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lit_offrl.recipes.pointmaze import EVAL_GOAL_CELLS, GOAL_RADIUS, make_pointmaze_dataset
from lit_offrl.errors import UserError

REPO = Path(__file__).resolve().parent.parent
MAZE2D_ID = "lit-offrl/maze2d/umaze-v0"
MAZE2D_DENSE_ID = "lit-offrl/maze2d/umaze-dense-v0"
POINTMAZE_ID = "lit-offrl/pointmaze/umaze-v0"
STEPS = 3_000  # 10 UMaze episodes of 300 steps
GOAL_NOISE = 0.25  # PointMaze's position_noise_range x maze_size_scaling (1 in PointMaze)


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    """A Minari root with the maze2d (sparse and dense) and pointmaze UMaze datasets, same seed and steps."""
    path = tmp_path_factory.mktemp("recipes")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MINARI_DATASETS_PATH", str(path))
        for dataset_id, reward_type, flavour in ((MAZE2D_ID, "sparse", "maze2d"), (MAZE2D_DENSE_ID, "dense", "maze2d"),
                                                 (POINTMAZE_ID, "sparse", "pointmaze")):
            make_pointmaze_dataset(dataset_id, maze="UMaze", reward_type=reward_type, steps=STEPS, seed=0,
                                   progress=False, flavour=flavour)
    return path


@pytest.fixture
def minari_root(root, monkeypatch):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(root))
    return root


def episodes(dataset_id: str) -> list:
    import minari

    return list(minari.load_dataset(dataset_id).iterate_episodes())


def eval_goal_centre(dataset) -> np.ndarray:
    env = dataset.recover_environment(eval_env=True)
    try:
        return np.asarray(env.unwrapped.maze.cell_rowcol_to_xy(np.array(EVAL_GOAL_CELLS["UMaze"])), dtype=np.float64)
    finally:
        env.close()


def test_maze2d_has_one_noisy_evaluation_goal_per_episode(minari_root):
    import minari

    centre = eval_goal_centre(minari.load_dataset(MAZE2D_ID))
    goals = []
    for episode in episodes(MAZE2D_ID):
        desired = episode.observations["desired_goal"]
        assert (desired == desired[0]).all(), "one goal per episode"
        assert np.abs(desired[0] - centre).max() <= GOAL_NOISE, "the goal lies in the evaluation goal cell's noise box"
        goals.append(desired[0])
    goals = np.array(goals)
    # drawn per episode like the eval env's goal, so observation normalization sees the noise it will meet
    assert len(np.unique(goals, axis=0)) == len(goals)
    assert (goals.std(axis=0) > 0.05).all()


@pytest.mark.parametrize("dataset_id", [MAZE2D_ID, MAZE2D_DENSE_ID])
def test_maze2d_rewards_are_those_of_the_stored_goal(minari_root, dataset_id):
    dense = "dense" in dataset_id
    visits = 0
    for episode in episodes(dataset_id):
        achieved, desired = episode.observations["achieved_goal"], episode.observations["desired_goal"]
        distance = np.linalg.norm(achieved - desired, axis=-1)
        # gymnasium-robotics MazeEnv.compute_reward: exp(-d) (dense), d <= 0.45 (sparse); d after the step
        expected = np.exp(-distance[1:]) if dense else (distance[1:] <= GOAL_RADIUS).astype(np.float64)
        np.testing.assert_allclose(episode.rewards, expected, rtol=0, atol=1e-9)
        np.testing.assert_array_equal(episode.infos["success"], distance <= GOAL_RADIUS)
        assert not episode.terminations.any() and episode.truncations[-1]
        visits += int((distance[1:] <= GOAL_RADIUS).sum())
    assert visits > 0, "the data reaches the evaluation goal"


def test_maze2d_holds_the_pointmaze_trajectories(minari_root):
    relabeled, original = episodes(MAZE2D_ID), episodes(POINTMAZE_ID)
    assert len(relabeled) == len(original) == STEPS // 300
    for a, b in zip(relabeled, original):
        for key in ("observation", "achieved_goal"):
            np.testing.assert_array_equal(a.observations[key], b.observations[key])
        np.testing.assert_array_equal(a.actions, b.actions)
        np.testing.assert_array_equal(a.truncations, b.truncations)
    # the pointmaze labels follow the controller's many goals; maze2d's only the evaluation goal
    original_goals = np.unique(np.concatenate([ep.observations["desired_goal"] for ep in original]), axis=0)
    assert len(original_goals) > len(original)


def test_maze2d_loads_and_scores_with_plain_minari(minari_root):
    import minari

    dataset = minari.load_dataset(MAZE2D_ID)
    pointmaze = minari.load_dataset(POINTMAZE_ID)
    assert dataset.total_steps == STEPS and dataset.total_episodes == STEPS // 300
    ref_min, ref_max = (dataset.storage.metadata[k] for k in ("ref_min_score", "ref_max_score"))
    assert (ref_min, ref_max) == (pointmaze.storage.metadata["ref_min_score"],
                                  pointmaze.storage.metadata["ref_max_score"]), "same evaluation env, same scores"
    np.testing.assert_allclose(minari.get_normalized_score(dataset, np.array([ref_min, ref_max])), [0.0, 1.0])

    env = dataset.recover_environment(eval_env=True)
    try:
        obs, _ = env.reset(seed=7)
        centre = np.asarray(env.unwrapped.maze.cell_rowcol_to_xy(np.array(EVAL_GOAL_CELLS["UMaze"])))
        assert np.abs(obs["desired_goal"] - centre).max() <= GOAL_NOISE
        for _ in range(5):
            next_obs, *_ = env.step(env.action_space.sample())
        np.testing.assert_array_equal(next_obs["desired_goal"], obs["desired_goal"])  # one goal per episode
    finally:
        env.close()


def test_maze2d_eval_goal_normalizes_to_moderate_values(minari_root):
    """The data's goal columns carry the eval env's goal noise, so z-scored eval goals stay a few std wide."""
    import minari

    from lit_offrl.data import minari_io

    dataset = minari.load_dataset(MAZE2D_ID)
    data = minari_io.load(dataset)
    mean, std = data.observations.mean(0), data.observations.std(0)
    env = dataset.recover_environment(eval_env=True)
    try:
        eval_obs = np.concatenate([minari_io.flatten_batch(data.observation_space,
                                                           {k: v[None] for k, v in env.reset(seed=s)[0].items()})
                                   for s in range(20)])
    finally:
        env.close()
    assert np.abs((eval_obs - mean) / std).max() < 10


def test_bad_flavour_and_too_few_steps_for_maze2d(tmp_path, monkeypatch):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))
    with pytest.raises(UserError, match="flavour"):
        make_pointmaze_dataset("lit-offrl/maze2d/umaze-v0", flavour="antmaze", steps=1000, progress=False)
    with pytest.raises(UserError, match="more than one episode"):
        make_pointmaze_dataset("lit-offrl/maze2d/umaze-v0", flavour="maze2d", steps=300, progress=False)
    assert not any(tmp_path.iterdir()), "nothing written"


# ----------------------------------------------------------------------------------------------------------------
# lit-offrl datasets
# ----------------------------------------------------------------------------------------------------------------


def datasets_cli(args: list[str], root: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "MINARI_DATASETS_PATH": str(root), "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, "cli.py", "datasets", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=300)


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """`datasets make` of a small maze2d UMaze dataset (3 episodes) into a fresh root."""
    root = tmp_path_factory.mktemp("cli")
    return root, datasets_cli(["make", MAZE2D_ID, "--steps", "900", "--seed", "3"], root)


def test_datasets_make_writes_and_summarizes(made, monkeypatch):
    import minari

    root, result = made
    assert result.returncode == 0, result.stderr
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(root))
    dataset = minari.load_dataset(MAZE2D_ID)
    assert (dataset.total_episodes, dataset.total_steps) == (3, 900)
    assert "3 episodes, 900 steps" in result.stdout
    assert "normalized return of the data" in result.stdout and "built in" in result.stdout


def test_datasets_list_marks_built_recipes(made):
    root, _ = made
    result = datasets_cli(["list"], root)
    assert result.returncode == 0, result.stderr
    recipes, local = result.stdout.split("Local datasets")
    marked = {line[2:].split()[0]: line.startswith("*") for line in recipes.splitlines() if "lit-offrl/" in line}
    from lit_offrl.recipes import RECIPES

    assert marked.keys() == set(RECIPES) and marked[MAZE2D_ID], "every recipe id listed, the built one marked"
    assert not any(built for dataset_id, built in marked.items() if dataset_id != MAZE2D_ID)
    assert [line.split()[0] for line in local.splitlines()[1:] if line.strip()] == [MAZE2D_ID]
    assert "3 episodes, 900 steps" in local


def test_datasets_show_prints_metadata(made, monkeypatch):
    import minari

    root, _ = made
    result = datasets_cli(["show", MAZE2D_ID], root)
    assert result.returncode == 0, result.stderr
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(root))
    metadata = minari.load_dataset(MAZE2D_ID).storage.metadata
    fields = dict(line.split(":", 1) for line in result.stdout.splitlines() if line and not line.startswith(" "))
    assert float(fields["ref_min_score"]) == pytest.approx(metadata["ref_min_score"])
    assert float(fields["ref_max_score"]) == pytest.approx(metadata["ref_max_score"])
    assert fields["episodes"].strip() == "3" and fields["steps"].strip() == "900"
    assert "reset_target=False" in fields["eval env"] and "PointMaze_UMaze-v3" in fields["eval env"]
    assert fields["algorithm_name"].strip() == metadata["algorithm_name"]
    assert fields["code_permalink"].strip() == metadata["code_permalink"]
    assert "relabeled to the evaluation goal" in result.stdout


@pytest.mark.parametrize("args, message", [
    (["make", MAZE2D_ID], "minari delete lit-offrl/maze2d/umaze-v0"),          # exists already
    (["make", "lit-offrl/maze2d/tiny-v0"], "no lit_offrl recipe makes"),         # unknown recipe id
    (["show", "lit-offrl/maze2d/large-v0"], "lit-offrl datasets make"),         # not local: says how to build it
    (["make", MAZE2D_ID, "--steps", "many"], "argument --steps: invalid integer"),  # bad argument
    (["make", MAZE2D_ID, "--steps", "0"], "argument --steps: must be >= 1"),
    (["frobnicate"], "invalid choice"),                                          # unknown command
])
def test_datasets_bad_input_is_one_line_exit_2(made, args, message):
    root, _ = made
    result = datasets_cli(args, root)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if "error" in line]
    assert len(errors) == 1 and errors[0].startswith("lit-offrl datasets: error:") and message in errors[0]


def test_recipes_main_dispatches_to_the_imported_family_module(tmp_path, capsys):
    """``python -m lit_offrl.recipes FAMILY ...`` runs the module the package already imported (running
    ``python -m lit_offrl.recipes.antmaze`` executed it a second time as ``__main__``, runpy's warning), and a
    missing or unknown family is one line naming the choices."""
    from lit_offrl.recipes import adroit
    from lit_offrl.recipes.__main__ import main

    main(["adroit", "status", "--task", "pen", "--cache-dir", str(tmp_path)])
    expected = adroit.run_directory(task="pen", cache_dir=str(tmp_path))
    assert capsys.readouterr().out.strip() == f"{expected}: done=False training_pid=None"
    for argv, shown in (([], "nothing"), (["nope", "status"], "'nope'")):
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        assert str(exit_info.value) == (f"python -m lit_offrl.recipes: got {shown}; give a recipe family first, one "
                                        "of antmaze, adroit (e.g. python -m lit_offrl.recipes antmaze status)")
