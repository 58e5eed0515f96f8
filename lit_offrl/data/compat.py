"""Compatibility fixes for third-party environment packages, applied when lit_offrl registers their envs.

Each fix is small, applied only when the installed versions need it, idempotent, and to be removed once the
package it works around is fixed upstream.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

_ROBOTICS_JOINT_FUNCTIONS = ("get_joint_qpos", "get_joint_qvel", "set_joint_qpos", "set_joint_qvel")


def joint_types_compare_by_value() -> bool:
    """Whether `mujoco.mjtJoint` members test equal to the NumPy integers of `MjModel.jnt_type` from both sides.

    In mujoco 4 (pybind11 enums) `np.int32(3) == mjtJoint.mjJNT_HINGE` is True but `mjtJoint.mjJNT_HINGE ==
    np.int32(3)` is False, so `joint_type in (mjtJoint.mjJNT_HINGE, ...)` (which compares from the tuple's
    side) is False for every hinge and slide joint."""
    import mujoco

    hinge = mujoco.mjtJoint.mjJNT_HINGE
    joint_type = np.zeros(1, dtype=np.int32)  # MjModel.jnt_type's dtype
    joint_type[0] = int(hinge)
    return bool(joint_type[0] in (hinge,))


def fix_gymnasium_robotics_joint_types() -> bool:
    """Make gymnasium-robotics' joint readers and writers compare joint types by integer value.

    gymnasium-robotics 1.4.2's `gymnasium_robotics/utils/mujoco_utils.py` (`set_joint_qpos`, `set_joint_qvel`,
    `get_joint_qpos`, `get_joint_qvel`, lines 142, 167, 192, 213) ends its joint-type dispatch with
    `assert joint_type in (mujoco.mjtJoint.mjJNT_HINGE, mujoco.mjtJoint.mjJNT_SLIDE)`, `joint_type` being the
    NumPy integer `model.jnt_type[joint_id]`. Under mujoco 4 that membership test is False for hinge and
    slide joints (see `joint_types_compare_by_value`), so FrankaKitchen-v1 fails its first `reset` with a bare
    AssertionError (`robot_get_obs` -> `get_joint_qpos`). This replaces the four functions with copies that
    convert both sides to `int` before comparing and otherwise behave exactly as the originals (including
    `get_joint_qvel`'s 4 values for a ball joint). Applied only when the comparison fails, and only once; every
    module of gymnasium_robotics already holding one of the originals by name is pointed at the replacement.

    To be removed once gymnasium-robotics compares joint types by value (or pins a mujoco where they do).

    Returns True when the fix was applied by this call.
    """
    try:
        import mujoco
        from gymnasium_robotics.utils import mujoco_utils
    except ImportError:
        return False
    if getattr(mujoco_utils, "_lit_offrl_joint_type_fix", False) or joint_types_compare_by_value():
        return False

    free, ball = int(mujoco.mjtJoint.mjJNT_FREE), int(mujoco.mjtJoint.mjJNT_BALL)
    hinge_or_slide = (int(mujoco.mjtJoint.mjJNT_HINGE), int(mujoco.mjtJoint.mjJNT_SLIDE))

    def joint_slice(model, name: str, address: Any, free_dim: int, ball_dim: int) -> slice:
        joint_id = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, name)
        assert joint_id != -1, f"Joint with name '{name}' is not part of the model!"
        joint_type = int(model.jnt_type[joint_id])
        if joint_type == free:
            ndim = free_dim
        elif joint_type == ball:
            ndim = ball_dim
        else:
            assert joint_type in hinge_or_slide, f"Joint '{name}' has an unknown type {joint_type}"
            ndim = 1
        start = int(address[joint_id])
        return slice(start, start + ndim)

    def checked(name: str, value: Any, where: slice) -> np.ndarray:
        value = np.array(value)
        if where.stop - where.start > 1:
            assert value.shape == (where.stop - where.start,), f"Value has incorrect shape {name}: {value}"
        return value

    def set_joint_qpos(model, data, name, value):
        """Set the joint positions (qpos) of the model."""
        where = joint_slice(model, name, model.jnt_qposadr, 7, 4)
        data.qpos[where] = checked(name, value, where)

    def set_joint_qvel(model, data, name, value):
        """Set the joints linear and angular (qvel) of the model."""
        where = joint_slice(model, name, model.jnt_dofadr, 6, 3)
        data.qvel[where] = checked(name, value, where)

    def get_joint_qpos(model, data, name):
        """Return the joints position and orientation (qpos) of the model."""
        return data.qpos[joint_slice(model, name, model.jnt_qposadr, 7, 4)].copy()

    def get_joint_qvel(model, data, name):
        """Return the joints linear and angular velocities (qvel) of the model."""
        return data.qvel[joint_slice(model, name, model.jnt_dofadr, 6, 4)].copy()

    replacements = {"set_joint_qpos": set_joint_qpos, "set_joint_qvel": set_joint_qvel,
                    "get_joint_qpos": get_joint_qpos, "get_joint_qvel": get_joint_qvel}
    originals = {name: getattr(mujoco_utils, name) for name in _ROBOTICS_JOINT_FUNCTIONS}
    for name, function in replacements.items():
        function.__module__ = mujoco_utils.__name__
        function.__qualname__ = name
        function.__wrapped_original__ = originals[name]
        setattr(mujoco_utils, name, function)
    # `robot_get_obs` and the robot envs (`self._utils = mujoco_utils`) look the functions up on the module; a
    # module that did `from gymnasium_robotics.utils.mujoco_utils import get_joint_qpos` holds the original.
    for module_name, module in list(sys.modules.items()):
        if module is None or not module_name.startswith("gymnasium_robotics") or module is mujoco_utils:
            continue
        for name, original in originals.items():
            if getattr(module, name, None) is original:
                setattr(module, name, replacements[name])
    mujoco_utils._lit_offrl_joint_type_fix = True
    return True


def apply_all() -> None:
    """Apply every compatibility fix the installed packages need (each is a no-op when not needed)."""
    fix_gymnasium_robotics_joint_types()
