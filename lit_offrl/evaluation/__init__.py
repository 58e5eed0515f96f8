"""Evaluation: vectorized rollouts of a policy in the dataset's evaluation environment."""

from lit_offrl.evaluation.rollout import make_vector_env, rollout

__all__ = ["make_vector_env", "rollout"]
