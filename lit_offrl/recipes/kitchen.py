"""FrankaKitchen data-generation recipe (D4RL ``kitchen-{complete,partial,mixed}`` / Minari ``D4RL/kitchen/*``).

What it builds
--------------
Ordinary local Minari datasets ``lit-offrl/kitchen/{complete,partial,mixed}-v0`` on Gymnasium-Robotics'
``FrankaKitchen-v1``, laid out like the hub's ``D4RL/kitchen/{complete,partial,mixed}-v2`` (Farama
``minari-dataset-generation-scripts``, ``scripts/D4RL/kitchen/create_franka_dataset.py``), with a scripted
demonstrator in place of the human teleoperation logs D4RL replayed (those logs are not available here).

* Data env (the hub's): ``FrankaKitchen-v1`` with ``remove_task_when_completed=False``,
  ``terminate_on_tasks_completed=False`` and

  - ``complete``: ``tasks_to_complete = [microwave, kettle, light switch, slide cabinet]``, 280 steps;
  - ``partial``: the same four tasks, 450 steps;
  - ``mixed``: ``[microwave, kettle, bottom burner, light switch]``, 450 steps.

  So the stored reward of a step is the number of those tasks whose objects are within ``BONUS_THRESH``
  (0.3) of their goal after the step, every step (a task stays rewarded while it stays done), and no episode
  terminates; an episode ends with ``truncations[-1] = True`` when its demonstration is over (or at the step
  limit), as the hub's episodes end when their log ends.
* Episodes:

  - ``complete``: all four target tasks attempted in D4RL's order (microwave, kettle, light switch, slide
    cabinet). Every episode is kept: the demonstrator does not complete all four reliably within 280 steps (see
    "Measured" below), so unlike D4RL's complete demos many episodes complete only some of them.
  - ``partial``: a quarter of the episodes do the four targets in order, the others a random ordered subset of
    one to three of the demonstrator's tasks, so the data holds the whole target sequence in some episodes only.
  - ``mixed``: random ordered subsets of two to four of the demonstrator's tasks; the demonstrator has no
    ``bottom burner`` skill, but its hand sometimes turns that knob by accident (the knob sits next to the
    light switch); episodes that complete all four mixed targets are dropped (D4RL: "the 4 target subtasks are
    never completed in sequence together").

  D4RL's partial and mixed demos also do tasks outside the targets (burners, hinge cabinet); this recipe's
  demonstrator covers the four target tasks of ``complete`` only (see below), so its partial/mixed data is less
  varied than D4RL's. Sizes (defaults): 20 / 60 / 60 episodes (D4RL: 19 / 601 / 601 demonstrations in 4,209 /
  156,560 / 156,560 steps).
* Evaluation env (``eval_env_spec``) and reference scores: D4RL's evaluation semantics, ``FrankaKitchen-v1``
  with the flavour's ``tasks_to_complete``, ``remove_task_when_completed=True`` and
  ``terminate_on_tasks_completed=True`` (the env defaults), 280 steps: a return is the number of target
  tasks completed (each counted once), and ``ref_min_score = 0``, ``ref_max_score = 4`` are D4RL's
  (``d4rl/kitchen/__init__.py`` registers kitchen-{complete,partial,mixed}-v0 with 0.0 / 4.0). The hub's
  generation script stores neither an eval env nor reference scores. Because the stored rewards repeat every
  step, a dataset episode's summed reward is not on that 0-4 scale; the recipe reports the data's
  normalized return on the evaluation scale: 100 x (number of target tasks an episode completes) / 4.

The demonstrator
----------------
``KitchenDemonstrator`` drives the arm in the env's own action space. FrankaKitchen-v1's action is a joint
velocity in [-1, 1], scaled by 2 rad/s (``act_rng``) and turned into a position target
``q_observed + 2 * a * dt`` with ``dt = 40 x 0.002 s = 0.08 s`` (``FrankaRobot._ctrl_velocity_limits``; 9
position actuators, the last two the fingers, 0 = closed, 0.04 = open). The demonstrator keeps a desired arm
configuration ``q_des`` and sends ``a = (q_des - q + i) / (2 dt)``, where ``i`` integrates ``q_des - q``
(gain 0.3, clipped to 0.2 rad) to remove the sag gravity leaves under the position servos; fingers get +1
(open) or -1 (close). ``q_des`` comes from damped-least-squares inverse kinematics (``ArmIK``: ``mj_jacSite``
on the ``end_effector`` site of the env's own ``MjModel``, position and orientation error, damping 0.03,
joint limits, a null-space pull towards the skill's key configuration) solved each step for a reference pose
that moves along straight Cartesian segments (quaternion slerp for the orientation). Before each skill the
arm moves in joint space to the skill's key configuration, found once per build by IK with restarts (the
solution nearest the reset posture). The skills, with poses computed from the model (sites
``microhandle_site``, ``kettle_site``, ``light_site``, ``slide_site``; the microwave handle's arc from the
door joint's kinematics):

* microwave: gripper horizontal, facing the door (the microwave stands rotated 0.3 rad about z); reach the
  handle (it stands 4 cm off the door), close, pull along the handle's arc to a door angle of -0.9 rad with the
  orientation held, open, back off. Goal -0.75 (done below -0.45).
* kettle: gripper pointing down, fingers across the handle; grasp it, lift 8 cm, carry it to the top-left
  burner (goal x, y = -0.23, 0.75), set it down, open, lift.
* light switch: closed gripper pushes the switch lever towards -x.
* slide cabinet: closed gripper pushes the door's handle towards +x by 27 cm (goal 0.37, done above 0.07).

Diversity: Gaussian noise (std ``action_noise``, 0.1 by default) on the arm's actions, and every waypoint
shifted by U(-``jitter``, ``jitter``) per axis (1 cm), drawn from the build's seed. Per-task success rates of
the demonstrator (``demonstrator_success_rates``) and the dataset's own completion counts are in each
dataset's description.

Measured
--------
Per-task success from reset, 20 seeded episodes each, action noise 0.1 (``demonstrator_success_rates``; 2-core
machine): microwave 100 %, light switch 100 %, slide cabinet 100 % (each skill alone, 70-82 steps), kettle 15 %
(the carried kettle is dragged along the stove top instead of lifted clear, and often lands short of the
goal). The four in D4RL's order within 280 steps: microwave 100 %, kettle 20 %, light switch 30 %, slide
cabinet 10 %: the sequence needs more than 280 steps, and after a failed kettle placement the hand's path to
the light switch knocks the kettle. Left to do: a firmer kettle grasp and lift, and a faster sequence.

Knobs: ``flavour``, ``episodes``, ``seed`` (episode reset seeds, noise, jitter, task subsets), ``action_noise``,
``jitter``. A build is deterministic from its seed.

Example::

    from lit_offrl.recipes.kitchen import make_kitchen_dataset
    ds = make_kitchen_dataset("lit-offrl/kitchen/complete-v0", flavour="complete")
"""

from __future__ import annotations

import logging
import os
import time
import warnings
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np

from lit_offrl.errors import UserError
from lit_offrl.recipes import policy_runs

if TYPE_CHECKING:  # pragma: no cover
    import gymnasium as gym
    import minari

__all__ = [
    "FLAVOURS",
    "SKILLS",
    "ArmIK",
    "KitchenDemonstrator",
    "task_done",
    "data_env_kwargs",
    "eval_env_kwargs",
    "demonstrator_success_rates",
    "make_kitchen_dataset",
    "register",
]

log = logging.getLogger(__name__)

CODE_PERMALINK = "lit_offrl/recipes/kitchen.py"
ALGORITHM_NAME = "ScriptedIKDemonstrator"
ENV_ID = "FrankaKitchen-v1"

TARGETS = ["microwave", "kettle", "light switch", "slide cabinet"]
# the hub's tasks_to_complete and max_episode_steps (create_franka_dataset.py: GOAL_TASKS, 280 / 450)
FLAVOURS = {
    "complete": {"tasks": TARGETS, "max_episode_steps": 280, "episodes": 20},
    "partial": {"tasks": TARGETS, "max_episode_steps": 450, "episodes": 60},
    "mixed": {"tasks": ["microwave", "kettle", "bottom burner", "light switch"], "max_episode_steps": 450,
              "episodes": 60},
}
SKILLS = ("microwave", "kettle", "light switch", "slide cabinet")
EVAL_MAX_EPISODE_STEPS = 280  # FrankaKitchen-v1's registered limit, D4RL's evaluation horizon
REF_MIN_SCORE, REF_MAX_SCORE = 0.0, 4.0  # D4RL kitchen-{complete,partial,mixed}-v0
PARTIAL_FULL_FRACTION = 0.25
IDLE_STEPS = 5  # steps held still after the last task of an episode

DT = 0.08  # FrankaRobot.dt: frame_skip 40 x timestep 0.002
VELOCITY_SCALE = 2.0  # FrankaRobot.act_rng
INTEGRAL_GAIN, INTEGRAL_LIMIT = 0.3, 0.2
TURN_RATE = 1.5  # rad/s, the fastest the reference orientation turns

# gripper orientations (columns: the end_effector site's x, y, z axes in world coordinates; z is the approach)
FORWARD = np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]])  # pointing +y, fingers along x
DOWN = np.array([[-1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, -1.0]])  # pointing -z, fingers along y
MICROWAVE_YAW = 0.3  # the microwave stands rotated about z; its door faces (sin, -cos) of this angle
MICROWAVE_PULL_TO = -0.9
MICROWAVE_JOINT = 22  # qpos index of the door hinge (OBS_ELEMENT_INDICES["microwave"])
KETTLE_GOAL_XYZ = np.array([-0.23, 0.75, 1.62])  # OBS_ELEMENT_GOALS["kettle"][:3]


def _rz(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def _rotation_error(current: np.ndarray, desired: np.ndarray) -> np.ndarray:
    """Small-angle rotation vector taking ``current`` to ``desired`` (both 3x3, columns = axes)."""
    return 0.5 * (np.cross(current[:, 0], desired[:, 0]) + np.cross(current[:, 1], desired[:, 1])
                  + np.cross(current[:, 2], desired[:, 2]))


def _mat2quat(matrix: np.ndarray) -> np.ndarray:
    import mujoco

    quat = np.zeros(4)
    mujoco.mju_mat2Quat(quat, np.ascontiguousarray(matrix).ravel())
    return quat


def _quat2mat(quat: np.ndarray) -> np.ndarray:
    import mujoco

    matrix = np.zeros(9)
    mujoco.mju_quat2Mat(matrix, quat)
    return matrix.reshape(3, 3)


def _slerp(a: np.ndarray, b: np.ndarray, s: float) -> np.ndarray:
    dot = float(a @ b)
    if dot < 0:
        b, dot = -b, -dot
    if dot > 0.9995:
        q = a + s * (b - a)
        return q / np.linalg.norm(q)
    theta = np.arccos(dot)
    return (np.sin((1 - s) * theta) * a + np.sin(s * theta) * b) / np.sin(theta)


def task_done(qpos: np.ndarray, task: str) -> bool:
    """Whether ``task``'s objects are within the env's ``BONUS_THRESH`` of their goal in ``qpos`` (any task, not
    only the env's ``tasks_to_complete``)."""
    from gymnasium_robotics.envs.franka_kitchen.kitchen_env import BONUS_THRESH, OBS_ELEMENT_GOALS, OBS_ELEMENT_INDICES

    return bool(np.linalg.norm(qpos[OBS_ELEMENT_INDICES[task]] - OBS_ELEMENT_GOALS[task]) < BONUS_THRESH)


class ArmIK:
    """Damped-least-squares IK for the Franka arm's 7 joints on a private ``MjData`` of the env's model.

    ``solve(q, p, R)`` iterates ``dq = J^T (J J^T + damping^2 I)^-1 e`` on the ``end_effector`` site (``e``: position
    error and ``rot_weight`` x orientation error, ``J`` from ``mj_jacSite``), plus a null-space pull towards
    ``rest``, within the joint limits (2 cm margin). The object joints of the private data stay at the model's
    reset values; only hand geometry matters here.
    """

    def __init__(self, model: Any, site: str = "end_effector", rot_weight: float = 0.5, damping: float = 0.03):
        import mujoco

        self.model = model
        self.data = mujoco.MjData(model)
        self.site = model.site(site).id
        self.jacp = np.zeros((3, model.nv))
        self.jacr = np.zeros((3, model.nv))
        self.low = model.jnt_range[:7, 0] + 0.02
        self.high = model.jnt_range[:7, 1] - 0.02
        self.rot_weight = rot_weight
        self.damping2 = damping**2

    def fk(self, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        import mujoco

        self.data.qpos[:7] = q
        mujoco.mj_kinematics(self.model, self.data)
        return self.data.site_xpos[self.site].copy(), self.data.site_xmat[self.site].reshape(3, 3).copy()

    def solve(self, q: np.ndarray, p: np.ndarray, R: np.ndarray, iters: int = 10,
              rest: np.ndarray | None = None) -> np.ndarray:
        import mujoco

        m, d, w = self.model, self.data, self.rot_weight
        q = q.copy()
        for _ in range(iters):
            d.qpos[:7] = q
            mujoco.mj_kinematics(m, d)
            mujoco.mj_comPos(m, d)
            error = np.concatenate([p - d.site_xpos[self.site],
                                    w * _rotation_error(d.site_xmat[self.site].reshape(3, 3), R)])
            mujoco.mj_jacSite(m, d, self.jacp, self.jacr, self.site)
            J = np.vstack([self.jacp[:, :7], w * self.jacr[:, :7]])
            A = J @ J.T + self.damping2 * np.eye(6)
            dq = J.T @ np.linalg.solve(A, error)
            if rest is not None:
                dq += (np.eye(7) - J.T @ np.linalg.solve(A, J)) @ (0.1 * (rest - q))
            q = np.clip(q + dq, self.low, self.high)
        return q

    def pose_error(self, q: np.ndarray, p: np.ndarray, R: np.ndarray) -> float:
        pp, RR = self.fk(q)
        return float(np.linalg.norm(pp - p) + 0.3 * np.linalg.norm(_rotation_error(RR, R)))

    def key_configuration(self, p: np.ndarray, R: np.ndarray, near: np.ndarray, rng: np.random.Generator,
                          restarts: int = 40) -> np.ndarray:
        """A configuration reaching (p, R) within 3 mm, the nearest to ``near`` among IK runs from ``near``,
        perturbations of it and uniform restarts; raises RuntimeError if none reaches."""
        best = None
        for k in range(restarts):
            if k == 0:
                start = near
            elif k < restarts // 2:
                start = near + rng.normal(0.0, 0.8, 7)
            else:
                start = rng.uniform(self.low, self.high)
            q = self.solve(np.clip(start, self.low, self.high), p, R, iters=150)
            if self.pose_error(q, p, R) < 3e-3:
                cost = float(np.linalg.norm(q - near))
                if best is None or cost < best[0]:
                    best = (cost, q)
        if best is None:
            raise RuntimeError(f"kitchen recipe: no arm configuration reaches {np.round(p, 3).tolist()}")
        return best[1]


class KitchenDemonstrator:
    """Scripted demonstrator for FrankaKitchen-v1 (see the module docstring): ``run(tasks)`` resets nothing and
    performs the skills in order on the env, recording every step; ``reset(seed)`` resets the env.

    ``env`` is a ``gym.make("FrankaKitchen-v1", ...)`` env (its TimeLimit ends the episode); ``rng`` drives the
    action noise and the waypoint jitter. Recorded per step: the observation dict after it, the action, reward,
    termination and truncation.
    """

    def __init__(self, env: "gym.Env", rng: np.random.Generator, action_noise: float = 0.1, jitter: float = 0.01,
                 key_configurations: dict[str, np.ndarray] | None = None):
        self.env = env
        self.kitchen = env.unwrapped
        self.model = self.kitchen.model
        self.ik = ArmIK(self.model)
        self.rng = rng
        self.action_noise = float(action_noise)
        self.jitter = float(jitter)
        self.keys = key_configurations if key_configurations is not None else {}

    # --- recording and the low-level controller ---------------------------------------------------------------

    def reset(self, seed: int) -> None:
        obs, _ = self.env.reset(seed=int(seed))
        self.observations = [obs]
        self.actions, self.rewards, self.terminations, self.truncations = [], [], [], []
        self.q = obs["observation"][:9].copy()
        self.q_des = self.q[:7].copy()
        self.rest = self.q[:7].copy()
        self.integral = np.zeros(7)
        self.grip = 1.0
        self.done = False
        self.ref_p, self.ref_R = self.ik.fk(self.q_des)

    def _step(self) -> None:
        error = self.q_des - self.q[:7]
        self.integral = np.clip(self.integral + INTEGRAL_GAIN * error, -INTEGRAL_LIMIT, INTEGRAL_LIMIT)
        action = np.empty(9)
        action[:7] = (error + self.integral) / (VELOCITY_SCALE * DT)
        action[7:] = self.grip
        if self.action_noise > 0:
            action[:7] += self.action_noise * self.rng.standard_normal(7)
        action = np.clip(action, -1.0, 1.0)
        obs, reward, terminated, truncated, _ = self.env.step(action)
        self.observations.append(obs)
        self.actions.append(action)
        self.rewards.append(float(reward))
        self.terminations.append(bool(terminated))
        self.truncations.append(bool(truncated))
        self.q = obs["observation"][:9].copy()
        self.done = bool(terminated or truncated)

    def ee(self) -> np.ndarray:
        return self.ik.fk(self.q[:7])[0]

    def joint_move(self, target: np.ndarray, grip: float | None = None, tol: float = 0.05, max_steps: int = 30,
                   rate: float = 0.16) -> None:
        if grip is not None:
            self.grip = grip
        self.rest = target
        for _ in range(max_steps):
            if self.done:
                return
            self.q_des = self.q_des + np.clip(target - self.q_des, -rate, rate)
            self._step()
            if np.abs(target - self.q[:7]).max() < tol:
                break
        self.ref_p, self.ref_R = self.ik.fk(self.q_des)

    def cart_move(self, p: np.ndarray, R: np.ndarray, grip: float | None = None, speed: float = 0.4,
                  tol: float = 0.02, max_steps: int = 25, jitter: bool = True) -> None:
        if grip is not None:
            self.grip = grip
        p = np.asarray(p, dtype=float)
        if jitter and self.jitter > 0:
            p = p + self.rng.uniform(-self.jitter, self.jitter, 3)
        p_start, quat_start, quat_end = self.ref_p.copy(), _mat2quat(self.ref_R), _mat2quat(R)
        turn = 2.0 * np.arccos(min(1.0, abs(float(quat_start @ quat_end))))
        n = max(1, int(np.ceil(np.linalg.norm(p - p_start) / (speed * DT))), int(np.ceil(turn / (TURN_RATE * DT))))
        for i in range(max_steps):
            if self.done:
                return
            s = min(n, i + 1) / n
            self.ref_p = p_start + s * (p - p_start)
            self.ref_R = _quat2mat(_slerp(quat_start, quat_end, s))
            self.q_des = self.ik.solve(self.q_des, self.ref_p, self.ref_R, iters=10, rest=self.rest)
            self._step()
            if i + 1 >= n and np.linalg.norm(self.ee() - p) < tol:
                break

    def wait(self, steps: int, grip: float | None = None) -> None:
        if grip is not None:
            self.grip = grip
        for _ in range(steps):
            if self.done:
                return
            self._step()

    # --- skills -------------------------------------------------------------------------------------------------

    def _site(self, name: str, qpos_changes: dict[int, float] | None = None) -> np.ndarray:
        import mujoco

        d = self.ik.data
        d.qpos[:] = self.kitchen.data.qpos
        for index, value in (qpos_changes or {}).items():
            d.qpos[index] = value
        mujoco.mj_kinematics(self.model, d)
        return d.site_xpos[self.model.site(name).id].copy()

    def _key(self, name: str, p: np.ndarray, R: np.ndarray) -> np.ndarray:
        if name not in self.keys:
            reset_q = self.kitchen.robot_env.init_qpos[:7].copy()
            self.keys[name] = self.ik.key_configuration(p, R, reset_q, np.random.default_rng(len(self.keys)))
        return self.keys[name]

    def _transit(self, key: np.ndarray, p: np.ndarray, R: np.ndarray, grip: float) -> None:
        """To a skill's start pose: a straight Cartesian move (the hand stays clear of what lies below the line)
        with the IK pulled towards the skill's key configuration, then a joint move onto it."""
        self.rest = key
        self.cart_move(p, R, grip=grip, speed=0.6, tol=0.03, max_steps=25)
        self.joint_move(key, max_steps=8)

    def microwave(self) -> None:
        R = _rz(MICROWAVE_YAW) @ FORWARD
        approach = R[:, 2]

        def handle(angle: float) -> np.ndarray:
            return self._site("microhandle_site", {MICROWAVE_JOINT: angle})

        self.joint_move(self._key("microwave", handle(0.0) - 0.10 * approach, R), grip=1.0)
        self.cart_move(handle(0.0), R, speed=0.3, tol=0.025)
        self.wait(5, grip=-1.0)
        for angle in np.linspace(0.0, MICROWAVE_PULL_TO, 15)[1:]:
            self.cart_move(handle(angle), R, speed=0.4, tol=0.03, max_steps=4, jitter=False)
        self.wait(3, grip=1.0)
        self.cart_move(self.ref_p - 0.08 * approach, R, speed=0.4, max_steps=8, jitter=False)

    def kettle(self) -> None:
        handle = self._site("kettle_site")
        handle_offset = handle - self.kitchen.data.qpos[23:26]
        above = handle + [0.0, 0.0, 0.12]
        self.joint_move(self._key("kettle", above, DOWN), grip=1.0)
        self.cart_move(above, DOWN, speed=0.4, max_steps=8)
        self.cart_move(handle + [0.0, 0.0, -0.005], DOWN, speed=0.3, max_steps=12)
        self.wait(5, grip=-1.0)
        self.cart_move(handle + [0.0, 0.0, 0.08], DOWN, speed=0.4, max_steps=8)
        goal = KETTLE_GOAL_XYZ + handle_offset
        self.cart_move(goal + [0.0, 0.0, 0.08], DOWN, speed=0.45, max_steps=20)
        self.cart_move(goal + [0.0, 0.0, 0.01], DOWN, speed=0.3, max_steps=6)
        self.wait(3, grip=1.0)
        # straight up, then back towards the robot, so the next joint move does not sweep the hand through the kettle
        self.cart_move(goal + [0.0, 0.0, 0.2], DOWN, speed=0.5, max_steps=8, jitter=False)
        self.cart_move(goal + [0.0, -0.3, 0.25], DOWN, speed=0.5, max_steps=8, jitter=False)

    def light_switch(self) -> None:
        lever = self._site("light_site")
        start = lever + [0.06, -0.11, 0.0]
        self._transit(self._key("light switch", start, FORWARD), start, FORWARD, grip=-1.0)
        self.cart_move(lever + [0.058, 0.009, 0.0], FORWARD, speed=0.3, max_steps=10)
        self.cart_move(lever + [-0.13, 0.009, 0.0], FORWARD, speed=0.3, max_steps=25, jitter=False)
        self.cart_move(self.ref_p + [0.0, -0.12, 0.0], FORWARD, speed=0.4, max_steps=8, jitter=False)

    def slide_cabinet(self) -> None:
        handle = self._site("slide_site")
        start = handle + [-0.09, -0.10, -0.05]
        self._transit(self._key("slide cabinet", start, FORWARD), start, FORWARD, grip=-1.0)
        self.cart_move(handle + [-0.065, 0.0, -0.05], FORWARD, speed=0.3, max_steps=10)
        self.cart_move(handle + [0.21, 0.0, -0.05], FORWARD, speed=0.3, max_steps=25, jitter=False)
        self.cart_move(self.ref_p + [0.0, -0.15, 0.0], FORWARD, speed=0.4, max_steps=8, jitter=False)

    def run(self, tasks: list[str], idle_steps: int = IDLE_STEPS) -> list[str]:
        """Perform ``tasks`` in order; returns the demonstrator tasks done at the end (in ``SKILLS``' order)."""
        skills = {"microwave": self.microwave, "kettle": self.kettle, "light switch": self.light_switch,
                  "slide cabinet": self.slide_cabinet}
        for task in tasks:
            if self.done:
                break
            skills[task]()
        self.wait(idle_steps)
        qpos = self.kitchen.data.qpos
        return [task for task in SKILLS if task_done(qpos, task)]


# --------------------------------------------------------------------------------------------------------------
# Datasets
# --------------------------------------------------------------------------------------------------------------


def data_env_kwargs(flavour: str) -> dict[str, Any]:
    """``gym.make`` kwargs of the data env of ``flavour`` (the hub's)."""
    spec = FLAVOURS[flavour]
    return {"tasks_to_complete": list(spec["tasks"]), "remove_task_when_completed": False,
            "terminate_on_tasks_completed": False, "max_episode_steps": spec["max_episode_steps"]}


def eval_env_kwargs(flavour: str) -> dict[str, Any]:
    """``gym.make`` kwargs of the evaluation env of ``flavour`` (D4RL's evaluation semantics)."""
    return {"tasks_to_complete": list(FLAVOURS[flavour]["tasks"]), "remove_task_when_completed": True,
            "terminate_on_tasks_completed": True, "max_episode_steps": EVAL_MAX_EPISODE_STEPS}


def _canonical_flavour(flavour: str) -> str:
    if isinstance(flavour, str) and flavour.lower() in FLAVOURS:
        return flavour.lower()
    raise UserError(f"Unknown kitchen flavour {flavour!r}; valid values: {', '.join(map(repr, FLAVOURS))}.")


def _episode_tasks(flavour: str, index: int, rng: np.random.Generator) -> list[str]:
    if flavour == "complete":
        return list(TARGETS)
    if flavour == "partial":
        if rng.random() < PARTIAL_FULL_FRACTION:
            return list(TARGETS)
        size = int(rng.integers(1, 4))
    else:
        size = int(rng.integers(2, len(SKILLS) + 1))
    return [SKILLS[i] for i in rng.permutation(len(SKILLS))[:size]]


def _buffer(demo: KitchenDemonstrator, seed: int):
    from minari.data_collector import EpisodeBuffer

    observations = demo.observations
    tasks = list(observations[0]["achieved_goal"])
    truncations = np.array(demo.truncations, dtype=bool)
    truncations[-1] = True  # the demonstration is over (or the step limit was reached)
    return EpisodeBuffer(
        id=None, seed=int(seed), options=None,
        observations={
            "observation": np.stack([o["observation"] for o in observations]).astype(np.float64),
            "achieved_goal": {t: np.stack([o["achieved_goal"][t] for o in observations]).astype(np.float64)
                              for t in tasks},
            "desired_goal": {t: np.stack([o["desired_goal"][t] for o in observations]).astype(np.float64)
                             for t in tasks},
        },
        actions=np.asarray(demo.actions, dtype=np.float64),
        rewards=np.asarray(demo.rewards, dtype=np.float64),
        terminations=np.asarray(demo.terminations, dtype=bool),
        truncations=truncations,
        infos=None,
    )


def _targets_completed(buffer, targets: list[str]) -> int:
    """Target tasks an episode completes at any step (its score on the evaluation scale, 0-4)."""
    from gymnasium_robotics.envs.franka_kitchen.kitchen_env import BONUS_THRESH, OBS_ELEMENT_GOALS

    achieved = buffer.observations["achieved_goal"]
    return sum(bool((np.linalg.norm(achieved[t][1:] - OBS_ELEMENT_GOALS[t], axis=-1) < BONUS_THRESH).any())
               for t in targets)


def demonstrator_success_rates(episodes: int = 20, seed: int = 0, action_noise: float = 0.1,
                               jitter: float = 0.01) -> dict[str, dict[str, float]]:
    """Per-task success rates of the demonstrator from reset: each skill alone, and the four in D4RL's order,
    over ``episodes`` seeded episodes each (280 steps)."""
    import gymnasium as gym

    env = gym.make(ENV_ID, **data_env_kwargs("complete"))
    keys: dict[str, np.ndarray] = {}
    results = {}
    try:
        for which in list(SKILLS) + ["sequence"]:
            counts = dict.fromkeys(SKILLS, 0)
            for ep, child in enumerate(np.random.SeedSequence([seed, len(results)]).spawn(episodes)):
                demo = KitchenDemonstrator(env, np.random.default_rng(child), action_noise, jitter, keys)
                demo.reset(seed * 100_003 + ep)
                for task in demo.run(list(TARGETS) if which == "sequence" else [which]):
                    counts[task] += 1
            results[which] = {task: counts[task] / episodes for task in SKILLS}
    finally:
        env.close()
    return results


def make_kitchen_dataset(dataset_id: str, flavour: str = "complete", episodes: int | None = None, seed: int = 0,
                         progress: bool = True, action_noise: float = 0.1, jitter: float = 0.01,
                         steps: int | None = None) -> "minari.MinariDataset":
    """Build the FrankaKitchen dataset ``dataset_id`` locally (in ``MINARI_DATASETS_PATH``) and return it.

    See the module docstring. ``episodes``: number of episodes written (default ``FLAVOURS[flavour]["episodes"]``);
    ``steps``: if given instead, episodes are collected until at least that many transitions are written.
    Raises ``UserError`` for bad arguments, ``FileExistsError`` if the dataset exists, ``RuntimeError`` if the
    recipe checks fail.
    """
    import gymnasium as gym
    import minari
    from minari.dataset.minari_dataset import parse_dataset_id
    from minari.storage.datasets_root_dir import get_dataset_path

    from lit_offrl.data.minari_io import create_dataset_atomically

    flavour = _canonical_flavour(flavour)
    if episodes is None and steps is None:
        episodes = FLAVOURS[flavour]["episodes"]
    for name, value in (("episodes", episodes), ("steps", steps)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1):
            raise UserError(f"{name} must be a positive integer, got {value!r}.")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise UserError(f"seed must be a non-negative integer, got {seed!r}.")
    try:
        parse_dataset_id(dataset_id)
    except (ValueError, TypeError) as e:
        raise UserError(f"Invalid dataset id {dataset_id!r}: {e}") from None
    path = get_dataset_path(dataset_id)
    if os.path.exists(path):
        raise FileExistsError(f"Minari dataset {dataset_id!r} already exists at {path}. Delete it first with "
                              f"`minari.delete_dataset({dataset_id!r})`, or choose another id/version.")

    t0 = time.perf_counter()
    targets = list(FLAVOURS[flavour]["tasks"])
    env = gym.make(ENV_ID, **data_env_kwargs(flavour))
    eval_env = gym.make(ENV_ID, **eval_env_kwargs(flavour))
    env_spec, eval_spec = env.spec, eval_env.spec
    eval_env.close()
    plan_rng = np.random.default_rng(np.random.SeedSequence([seed, 1]))
    keys: dict[str, np.ndarray] = {}
    buffers, scores, planned = [], [], []
    tries, max_tries = 0, 10**9
    total = 0
    from tqdm.auto import tqdm

    bar = tqdm(total=episodes if episodes is not None else steps, disable=not progress, desc=f"kitchen-{flavour}")
    try:
        while tries < max_tries:
            if episodes is not None and len(buffers) >= episodes:
                break
            if steps is not None and total >= steps:
                break
            tasks = _episode_tasks(flavour, tries, plan_rng)
            episode_seed = seed * 100_003 + tries
            demo = KitchenDemonstrator(env, np.random.default_rng(np.random.SeedSequence([seed, 2, tries])),
                                       action_noise, jitter, keys)
            demo.reset(episode_seed)
            done = demo.run(tasks)
            tries += 1
            buffer = _buffer(demo, episode_seed)
            if flavour == "mixed" and _targets_completed(buffer, targets) == len(targets):
                continue  # the hand can turn the bottom-burner knob by accident; mixed never does all 4 targets
            buffers.append(buffer)
            planned.append(tasks)
            scores.append(_targets_completed(buffer, targets))
            total += len(buffer.rewards)
            bar.update(1 if episodes is not None else len(buffer.rewards))
    finally:
        bar.close()
        env.close()
    if not buffers:
        raise RuntimeError(f"kitchen recipe check failed: no {flavour} episode was recorded")
    if flavour == "mixed" and max(scores) == len(targets):
        raise RuntimeError("kitchen recipe check failed: a mixed episode completed all four mixed targets")
    t_collect = time.perf_counter() - t0
    normalized = 100.0 * (np.mean(scores) - REF_MIN_SCORE) / (REF_MAX_SCORE - REF_MIN_SCORE)
    counts = {t: int(sum(_targets_completed(b, [t]) for b in buffers)) for t in targets}
    description = (
        f"FrankaKitchen-v1 {flavour}: {total} transitions in {len(buffers)} episodes ({tries} tried) of a scripted "
        f"IK demonstrator (lit_offrl/recipes/kitchen.py), action noise std {action_noise}, waypoint jitter "
        f"{jitter} m, seed {seed}. Data env as the hub's D4RL/kitchen/{flavour}-v2: tasks_to_complete={targets}, "
        f"remove_task_when_completed=False, terminate_on_tasks_completed=False, "
        f"max_episode_steps={FLAVOURS[flavour]['max_episode_steps']} (reward = tasks done after each step). "
        f"Eval env: D4RL semantics (tasks removed when done, terminate when all done, 280 steps); ref scores "
        f"0 / 4 (D4RL). Episodes completing each target: {counts}; normalized data return on the eval scale "
        f"{normalized:.1f}."
    )
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*author_email.*")
        dataset = create_dataset_atomically(
            dataset_id=dataset_id, buffer=buffers, env=env_spec, eval_env=eval_spec,
            algorithm_name=ALGORITHM_NAME, author="lit_offrl", code_permalink=CODE_PERMALINK,
            ref_min_score=REF_MIN_SCORE, ref_max_score=REF_MAX_SCORE, description=description,
            requirements=policy_runs.requirements("gymnasium-robotics", "mujoco"))
    report = {"dataset_id": dataset_id, "episodes": len(buffers), "tries": tries, "steps": total,
              "targets_completed": counts, "normalized_data_return": round(float(normalized), 1),
              "seconds": round(time.perf_counter() - t0, 1), "seconds_collect": round(t_collect, 1)}
    dataset.lit_offrl_report = report
    log.info("kitchen dataset built: %s", report)
    if progress:
        print(f"[kitchen] {report}")
    return dataset


def register() -> None:
    """Register ``lit-offrl/kitchen/{complete,partial,mixed}-v0`` in ``lit_offrl.data.registry``."""
    from lit_offrl.data.registry import register as register_builder

    labels = {"complete": "the 4 targets in order (D4RL kitchen-complete)",
              "partial": "task subsets, some doing all 4 targets (D4RL kitchen-partial)",
              "mixed": "task subsets, none doing all 4 mixed targets (D4RL kitchen-mixed)"}
    for flavour, label in labels.items():
        dataset_id = f"lit-offrl/kitchen/{flavour}-v0"
        register_builder(dataset_id, partial(make_kitchen_dataset, dataset_id, flavour=flavour),
                         f"FrankaKitchen-v1, scripted IK demonstrator: {label}")
