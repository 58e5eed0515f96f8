"""Data: Minari datasets as flat tensors, the offline data module, and dataset recipes."""

import contextlib
import io
import warnings

with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
    # gymnasium_robotics prints a notice on import about an Adroit reward change unrelated to lit_offrl;
    # importing it here, once, keeps it out of every run's output (later imports are cached and silent).
    warnings.simplefilter("ignore")
    import gymnasium_robotics  # noqa: F401

from lit_offrl.data import compat as _compat

# gymnasium-robotics 1.4.2 under mujoco 4: FrankaKitchen-v1's joint readers assert on every hinge joint (see
# compat.fix_gymnasium_robotics_joint_types); a no-op where the installed versions do not need it.
_compat.apply_all()
