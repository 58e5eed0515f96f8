"""Network building blocks shared by the algorithms."""

from lit_offrl.nets.critics import EnsembleCritic, ValueNetwork
from lit_offrl.nets.mlp import VectorizedLinear, mlp, vectorized_mlp
from lit_offrl.nets.policies import DeterministicActor, GaussianActor, TanhGaussianActor

__all__ = ["EnsembleCritic", "ValueNetwork", "VectorizedLinear", "mlp", "vectorized_mlp", "DeterministicActor",
           "GaussianActor", "TanhGaussianActor"]
