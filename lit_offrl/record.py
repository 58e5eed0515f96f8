"""`lit-offrl record`: look at a policy. Render a checkpoint's evaluation episodes to MP4 or GIF, and for maze
datasets (PointMaze, maze2d, AntMaze) plot its paths through the maze beside the dataset's.

    lit-offrl record lightning_logs/version_0/checkpoints/last.ckpt --episodes 3
    lit-offrl record CKPT --episodes 2 --out DIR --format gif --width 160 --height 160 --max-steps 200

The model is rebuilt from the checkpoint (its class and hyperparameters, then its weights and observation
statistics) and acts deterministically, as in validation, in the dataset's evaluation env made with
`render_mode="rgb_array"`. Episode i resets with seed S + i, where S is `--seed` or the run's `data.eval_seed`,
so by default the episodes are the first ones validation scores. Written to `--out` (default: `record/` in the
run folder): `episode_<i>.mp4|gif` with one frame for the reset and one after every step (steps + 1 frames;
a GIF may merge identical consecutive frames into one longer frame), `trajectories.png` for maze datasets, and
`episodes.json` (seed, return, normalized score, length and files of each episode).

MuJoCo renders headless through EGL (a GPU driver or Mesa's software renderer) or OSMesa; `MUJOCO_GL` is set to
`egl` (or `osmesa` where only OSMesa is installed) unless it is set already. Where no frame can be rendered, one
line says which package to install and the rest (plots, episodes.json) is still written. Exit status: 0 when
everything asked for was written or only the videos could not be rendered, 1 when nothing could be written
(no rendering and no maze to plot), 2 for bad input (one `lit-offrl record: error: ...` line).
"""

from __future__ import annotations

import argparse
import ctypes.util
import gc
import json
import os
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from lit_offrl.data.datamodule import reference_returns
from lit_offrl.datasets_cli import _count, _Parser, run_tool
from lit_offrl.errors import DatasetError, UserError, one_line
from lit_offrl.export import load_checkpoint_model  # the model a checkpoint holds, in eval mode

PROG = "lit-offrl record"
# Mesa's headless OpenGL on Debian/Ubuntu: EGL (libEGL + the Mesa vendor library + the software DRI driver).
EGL_PACKAGES = "libegl1 libegl-mesa0 libgl1-mesa-dri libopengl0"
OSMESA_PACKAGE = "libosmesa6"


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description="Render a checkpoint's evaluation episodes to MP4/GIF; for maze "
                                            "datasets also plot its paths beside the dataset's.")
    parser.add_argument("checkpoint", metavar="CKPT", help="a lit_offrl checkpoint (e.g. .../checkpoints/last.ckpt)")
    parser.add_argument("--episodes", type=_count(1), default=1, metavar="N", help="episodes to roll out (default 1)")
    parser.add_argument("--out", default=None, metavar="DIR",
                        help="output folder (default: record/ in the checkpoint's run folder)")
    parser.add_argument("--format", choices=("mp4", "gif"), default="mp4", help="video format (default mp4)")
    parser.add_argument("--seed", type=_count(0), default=None, metavar="S",
                        help="episode i resets with seed S + i (default: the run's data.eval_seed, so the episodes "
                             "are validation's first ones)")
    parser.add_argument("--max-steps", type=_count(1), default=None, metavar="T",
                        help="cut each episode after T steps (default: the env's own limit)")
    parser.add_argument("--width", type=_count(16), default=None, metavar="PX",
                        help="frame width in pixels (default: the env's, 480 for MuJoCo)")
    parser.add_argument("--height", type=_count(16), default=None, metavar="PX",
                        help="frame height in pixels (default: the env's, 480 for MuJoCo)")
    parser.add_argument("--fps", type=_count(1), default=None, metavar="F",
                        help="video frames per second (default: the env's render_fps, else 30)")
    parser.add_argument("--frame-every", type=_count(1), default=1, metavar="K",
                        help="keep every K-th frame (smaller files; the reset frame is always kept; default 1)")
    parser.add_argument("--dataset-episodes", type=_count(0), default=20, metavar="K",
                        help="maze datasets: dataset episodes drawn in the trajectory plot (default 20)")
    return parser


def main(argv: list[str]) -> int:
    """Run `lit-offrl record ARGV`; returns the exit status (0 written, 1 nothing could be written, 2 bad input)."""
    return run_tool(PROG, _parser(), record, argv)


# ----------------------------------------------------------------------------------------------------------------
# rendering backend
# ----------------------------------------------------------------------------------------------------------------


def choose_gl_backend(environ: dict | None = None) -> str:
    """The MuJoCo OpenGL backend to render with: `MUJOCO_GL` if the user set it, else `egl` where a libEGL is
    installed, `osmesa` where only libOSMesa is, else `egl` (which then fails with the install hint). Sets
    `MUJOCO_GL` when it chooses; gymnasium reads it when an env first renders, so call this before that."""
    environ = os.environ if environ is None else environ
    if environ.get("MUJOCO_GL"):
        return environ["MUJOCO_GL"]
    backend = "osmesa" if not ctypes.util.find_library("EGL") and ctypes.util.find_library("OSMesa") else "egl"
    environ["MUJOCO_GL"] = backend
    return backend


def rendering_hint(backend: str) -> str:
    """What to install (or change) so that MuJoCo renders headless with `backend`."""
    if backend == "osmesa":
        return f"install OSMesa (Debian/Ubuntu: `apt-get install {OSMESA_PACKAGE}`) or unset MUJOCO_GL to use EGL"
    if backend == "egl":
        return (f"install Mesa's EGL (Debian/Ubuntu: `apt-get install {EGL_PACKAGES}`), or OSMesa "
                f"(`apt-get install {OSMESA_PACKAGE}`) with MUJOCO_GL=osmesa")
    if backend == "glfw":
        return "glfw needs a display: unset MUJOCO_GL to render headless with EGL"
    return f"MUJOCO_GL={backend!r} is not a MuJoCo backend: use egl or osmesa (or unset it)"


# ----------------------------------------------------------------------------------------------------------------
# checkpoint -> policy, dataset, environment
# ----------------------------------------------------------------------------------------------------------------


class EvalSource:
    """Where a run's evaluation episodes come from: its dataset (or Gymnasium id), observation space, eval seed,
    reference scores, and a factory for its evaluation env with extra `gym.make` arguments (render_mode, size)."""

    def __init__(self, data_hparams: dict):
        import gymnasium as gym

        from lit_offrl.data import minari_io
        from lit_offrl.data.online import _is_gym_id

        self.eval_seed = int(data_hparams.get("eval_seed", 1_000_000))
        dataset_id = data_hparams.get("dataset_id") or data_hparams.get("offline_dataset_id")
        env_id = data_hparams.get("env_id")
        self.dataset = None
        if env_id is not None and _is_gym_id(env_id):  # an online run in a Gymnasium env (OnlineDataModule's test)
            self.name, self.spec = env_id, gym.spec(env_id)
            self.observation_space = None  # from the env
        else:
            self.name = env_id or dataset_id
            if not self.name:
                raise UserError("the checkpoint's data module names no dataset (datamodule_hyper_parameters has no "
                                "dataset_id or env_id): it was not written by `lit-offrl fit`.")
            self.dataset = minari_io.resolve(self.name)
            self.spec = minari_io.eval_env_spec(self.dataset)
            if self.spec is None:
                raise DatasetError(f"dataset '{self.name}' records no environment to roll the policy out in.")
            self.observation_space = self.dataset.observation_space
        # Scored as validation scores (OfflineDataModule): the dataset's reference returns, else D4RL's for Minari's
        # mujoco/* ids, else (FrankaKitchen) 100 x sub-tasks completed / tasks.
        given = data_hparams.get("ref_min_score"), data_hparams.get("ref_max_score")  # --data.ref_min/max_score
        self.ref_min_score, self.ref_max_score = (reference_returns(self.dataset, self.name, *given)[:2]
                                                  if self.dataset else (None, None))

    def make_env(self, **kwargs: Any):
        import gymnasium as gym

        if self.dataset is not None:
            return self.dataset.recover_environment(eval_env=True, **kwargs)
        return gym.make(self.spec, **kwargs)

    def normalized_score(self, episode_return: float, tasks: tuple[int, int] | None = None) -> float | None:
        """D4RL normalized score x100 from the reference returns; without them, for an episode with sub-tasks
        (`tasks` = (completed, of them), FrankaKitchen), D4RL's kitchen score 100 x completed / tasks; else None."""
        if self.ref_min_score is None or self.ref_max_score is None or self.ref_max_score == self.ref_min_score:
            return 100.0 * tasks[0] / tasks[1] if tasks is not None and tasks[1] else None
        return 100.0 * (episode_return - self.ref_min_score) / (self.ref_max_score - self.ref_min_score)


def positions(space, observations: Any) -> np.ndarray | None:
    """(T, 2) x, y of a maze agent from raw (unflattened) observations: the `achieved_goal` entry of a Dict
    observation (PointMaze: the ball; AntMaze: the torso), else the first two of `observation`; None otherwise."""
    from gymnasium import spaces

    if isinstance(space, spaces.Dict):
        for key in ("achieved_goal", "observation"):
            if key in space.spaces:
                return np.asarray(observations[key], dtype=np.float64).reshape(-1, space[key].shape[-1])[:, :2]
        return None
    return np.asarray(observations, dtype=np.float64).reshape(len(observations), -1)[:, :2]


# ----------------------------------------------------------------------------------------------------------------
# rollouts
# ----------------------------------------------------------------------------------------------------------------


class Episode:
    """One recorded evaluation episode."""

    def __init__(self, index: int, seed: int):
        self.index, self.seed = index, seed
        self.total_return, self.length, self.cut = 0.0, 0, False
        self.xy: np.ndarray | None = None  # (length + 1, 2) x, y for maze envs
        self.goal: np.ndarray | None = None
        self.score: float | None = None
        self.success = False
        self.tasks: tuple[int, int] | None = None  # (sub-tasks completed, sub-tasks) where the env lists them
        self.video: Path | None = None
        self.frames = 0


def rollout_episode(model, env, space, episode: Episode, max_steps: int | None, writer=None,
                    frame_every: int = 1) -> Episode:
    """Run `model.act` (deterministic) for one episode from `env.reset(seed=episode.seed)`; with `writer`, render
    the reset and every `frame_every`-th step into it. Records return, length, x, y and the goal."""
    import gymnasium as gym

    if hasattr(model, "reset_plan"):  # open-loop planners (LatentEM) queue actions across calls
        model.reset_plan()
    obs, reset_info = env.reset(seed=episode.seed)
    to_complete = reset_info.get("tasks_to_complete") if isinstance(reset_info, dict) else None
    dict_obs = isinstance(space, gym.spaces.Dict)
    if dict_obs and "desired_goal" in obs:
        episode.goal = np.asarray(obs["desired_goal"], dtype=np.float64)[:2]
    observations = [obs]
    if writer is not None:
        writer.append_data(env.render())
        episode.frames += 1
    done = False
    while not done:
        flat = gym.spaces.flatten(space, obs).astype(np.float32)[None]
        action = model.act(flat).cpu().numpy()[0]
        obs, reward, terminated, truncated, info = env.step(action)
        episode.total_return += float(reward)
        episode.length += 1
        episode.success = episode.success or bool(info.get("success", False))
        if to_complete and "episode_task_completions" in info:
            episode.tasks = (len(info["episode_task_completions"]), len(to_complete))
        observations.append(obs)
        episode.cut = max_steps is not None and episode.length >= max_steps and not (terminated or truncated)
        done = terminated or truncated or episode.cut
        if writer is not None and (episode.length % frame_every == 0 or done):
            writer.append_data(env.render())
            episode.frames += 1
    stacked = ({key: np.stack([o[key] for o in observations]) for key in observations[0]} if dict_obs
               else np.stack(observations))
    episode.xy = positions(space, stacked)
    return episode


class FrameList:
    """A frame writer that keeps the frames in `frames`."""

    def __init__(self):
        self.frames: list[np.ndarray] = []

    def append_data(self, frame: np.ndarray) -> None:
        self.frames.append(np.asarray(frame))

    def close(self) -> None:
        pass


class _GifWriter(FrameList):
    """Collects frames and writes one looping GIF on close (Pillow writes GIFs whole)."""

    def __init__(self, path: Path, fps: int):
        super().__init__()
        self.path, self.fps = path, fps

    def close(self) -> None:
        import imageio.v3 as iio

        iio.imwrite(self.path, np.stack(self.frames), extension=".gif", duration=1000.0 / self.fps, loop=0)


def video_writer(path: Path, fmt: str, fps: int):
    """A frame writer with `append_data(frame)` and `close()`: MP4 through imageio-ffmpeg (H.264, streamed to
    disk), or GIF through Pillow."""
    if fmt == "gif":
        return _GifWriter(path, fps)
    import imageio.v2 as imageio

    # macro_block_size 2: H.264 in yuv420p needs even sizes; imageio's default 16 would rescale e.g. 200x200.
    return imageio.get_writer(path, format="FFMPEG", mode="I", fps=fps, codec="libx264", macro_block_size=2,
                              ffmpeg_log_level="error")


def probe_rendering(source: EvalSource, size: dict) -> str | None:
    """None if the evaluation env renders an RGB frame (with the MUJOCO_GL backend), else why not (one line)."""
    # A viewer whose GL context failed is freed with an AttributeError in its __del__ (gymnasium), which Python
    # would print as a traceback after our one line: collected here, with that report silenced.
    hook, sys.unraisablehook = sys.unraisablehook, lambda unraisable: None
    try:
        return _probe_rendering(source, size)
    finally:
        gc.collect()
        sys.unraisablehook = hook


def _probe_rendering(source: EvalSource, size: dict) -> str | None:
    env = None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            env = source.make_env(render_mode="rgb_array", **size)
            env.reset(seed=source.eval_seed)
            frame = env.render()
        if frame is None or np.asarray(frame).ndim != 3:
            return "the environment returned no RGB frame"
        return None
    except TypeError as exc:
        if size and ("width" in str(exc) or "height" in str(exc)):
            raise UserError(f"--width/--height: the evaluation env '{source.spec.id}' takes no frame size "
                            f"({one_line(f'{type(exc).__name__}: {exc}')}); leave them out.") from None
        return one_line(f'{type(exc).__name__}: {exc}')
    except Exception as exc:
        return one_line(f'{type(exc).__name__}: {exc}')
    finally:
        if env is not None:
            try:
                env.close()
            except Exception:  # a renderer that never started can fail to close; nothing to clean up then
                pass


# ----------------------------------------------------------------------------------------------------------------
# trajectory plot
# ----------------------------------------------------------------------------------------------------------------


def maze_of(env):
    """The gymnasium-robotics `Maze` of a PointMaze / AntMaze env, or None for other envs."""
    maze = getattr(env.unwrapped, "maze", None)
    return maze if maze is not None and hasattr(maze, "maze_map") and hasattr(maze, "cell_rowcol_to_xy") else None


def dataset_paths(dataset, count: int, seed: int) -> tuple[list[np.ndarray], int]:
    """x, y paths of `count` dataset episodes drawn without replacement (seeded), and the number of episodes."""
    indices = np.asarray(list(dataset.episode_indices))
    chosen = np.sort(np.random.default_rng(seed).choice(indices, size=min(count, len(indices)), replace=False))
    paths = [positions(dataset.observation_space, episode.observations)
             for episode in dataset.iterate_episodes(episode_indices=chosen.tolist())]
    return [p for p in paths if p is not None], len(indices)


def plot_trajectories(path: Path, maze, episodes: list[Episode], data_paths: list[np.ndarray], data_total: int,
                      title: str, dataset_name: str) -> None:
    """Two panels over the maze's walls: the policy's evaluation paths (start o, end x, goal *) and a sample of
    the dataset's episodes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    scale = float(maze.maze_size_scaling)
    rows, cols = len(maze.maze_map), len(maze.maze_map[0])
    half_w, half_h = cols * scale / 2, rows * scale / 2
    panel_w = 5.0
    panel_h = panel_w * rows / cols
    fig, axes = plt.subplots(1, 2, figsize=(2 * panel_w, panel_h + 0.9))
    goals = [e.goal for e in episodes if e.goal is not None]
    for ax in axes:
        for r, row in enumerate(maze.maze_map):
            for c, cell in enumerate(row):
                if cell == 1:
                    x, y = maze.cell_rowcol_to_xy(np.array([r, c]))
                    ax.add_patch(Rectangle((x - scale / 2, y - scale / 2), scale, scale, color="0.3", lw=0))
        ax.set_xlim(-half_w, half_w)  # cell_rowcol_to_xy centres the maze on (0, 0)
        ax.set_ylim(-half_h, half_h)
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
    policy_ax, data_ax = axes
    colors = plt.get_cmap("tab10")
    for k, episode in enumerate(episodes):
        xy, color = episode.xy, colors(k % 10)
        score = f", score {episode.score:.0f}" if episode.score is not None else ""
        policy_ax.plot(xy[:, 0], xy[:, 1], color=color, lw=1.6, label=f"seed {episode.seed}{score}")
        policy_ax.plot(*xy[0], "o", color=color, ms=7, mec="black")
        policy_ax.plot(*xy[-1], "X", color=color, ms=8, mec="black")
        if episode.goal is not None:  # each reset draws the goal with a little noise
            policy_ax.plot(*episode.goal, "*", color=color, ms=14, mec="black")
    for xy in data_paths:
        data_ax.plot(xy[:, 0], xy[:, 1], lw=0.9, alpha=0.75)
        data_ax.plot(*xy[0], "o", color="black", ms=3)
    if goals:
        data_ax.plot(*np.mean(goals, axis=0), "*", color="gold", ms=20, mec="black", label="evaluation goal")
    policy_ax.set_title(f"policy: {len(episodes)} evaluation episode{'s' * (len(episodes) != 1)} "
                        f"(o start, X end, * goal)", fontsize=10)
    data_ax.set_title(f"dataset: {len(data_paths)} of {data_total} episodes (o start)", fontsize=10)
    policy_ax.legend(loc="lower left", fontsize=7, framealpha=0.8)
    if goals:
        data_ax.legend(loc="lower left", fontsize=7, framealpha=0.8)
    fig.suptitle(f"{title}\n{dataset_name}", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# ----------------------------------------------------------------------------------------------------------------
# the command
# ----------------------------------------------------------------------------------------------------------------


def default_out(checkpoint: Path) -> Path:
    """record/ in the run folder (the folder above checkpoints/), else beside the checkpoint."""
    parent = checkpoint.resolve().parent
    return (parent.parent if parent.name == "checkpoints" else parent) / "record"


def record(args: argparse.Namespace) -> int:
    backend = choose_gl_backend()  # before anything renders (gymnasium reads MUJOCO_GL then)
    checkpoint_path = Path(args.checkpoint)
    model, checkpoint = load_checkpoint_model(checkpoint_path)
    source = EvalSource(dict(checkpoint.get("datamodule_hyper_parameters") or {}))
    seed = source.eval_seed if args.seed is None else args.seed
    size = {key: value for key, value in (("width", args.width), ("height", args.height)) if value is not None}
    out = Path(args.out) if args.out is not None else default_out(checkpoint_path)
    out.mkdir(parents=True, exist_ok=True)

    problem = probe_rendering(source, size)
    if problem is not None:
        print(f"{PROG}: warning: cannot render with MUJOCO_GL={backend} ({problem}); no video written: "
              f"{rendering_hint(backend)}.", file=sys.stderr, flush=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Minari's requirement notes, gymnasium's render-fps notes
        env = source.make_env(render_mode="rgb_array", **size) if problem is None else source.make_env()
    space = source.observation_space or env.observation_space
    fps = args.fps or max(1, round(env.metadata.get("render_fps") or 30) // args.frame_every)
    updates = int(model.num_updates)
    print(f"lit_offrl: recording {args.episodes} episode{'s' * (args.episodes != 1)} of {type(model).__name__} "
          f"({updates} updates) in {source.spec.id} from seed {seed} -> {out}", flush=True)
    episodes = []
    try:
        for index in range(args.episodes):
            episode = Episode(index, seed + index)
            writer = None
            if problem is None:
                episode.video = out / f"episode_{index}.{args.format}"
                writer = video_writer(episode.video, args.format, fps)
            try:
                rollout_episode(model, env, space, episode, args.max_steps, writer, args.frame_every)
            finally:
                if writer is not None:
                    writer.close()
            episode.score = source.normalized_score(episode.total_return, episode.tasks)
            episodes.append(episode)
            score = f", normalized score {episode.score:.1f}" if episode.score is not None else ""
            cut = " (cut by --max-steps)" if episode.cut else ""
            video = f" -> {episode.video} ({episode.frames} frames)" if episode.video else ""
            print(f"  episode {index} (seed {episode.seed}): return {episode.total_return:.2f}{score}, "
                  f"{episode.length} steps{cut}{video}", flush=True)
        maze = maze_of(env)
    finally:
        env.close()

    plot = None
    if maze is not None and all(e.xy is not None for e in episodes):
        data_paths, data_total = ([], 0)
        if source.dataset is not None and args.dataset_episodes > 0:
            data_paths, data_total = dataset_paths(source.dataset, args.dataset_episodes, seed)
        plot = out / "trajectories.png"
        plot_trajectories(plot, maze, episodes, data_paths, data_total,
                          f"{type(model).__name__} after {updates} updates", source.name)
        print(f"  trajectories -> {plot}", flush=True)
    summary = {"checkpoint": str(checkpoint_path), "model": type(model).__name__, "updates": updates,
               "dataset": source.name, "env": source.spec.id, "trajectories": str(plot) if plot else None,
               "episodes": [{"index": e.index, "seed": e.seed, "return": e.total_return, "normalized_score": e.score,
                             "length": e.length, "cut": e.cut, "success": e.success,
                             "video": str(e.video) if e.video else None, "frames": e.frames} for e in episodes]}
    (out / "episodes.json").write_text(json.dumps(summary, indent=2) + "\n")
    if problem is not None and plot is None:
        print(f"{PROG}: nothing to look at without rendering ({source.spec.id} is not a maze to plot); "
              f"the episodes' returns are in {out / 'episodes.json'}.", file=sys.stderr)
        return 1
    return 0
