"""lit_offrl: offline reinforcement learning on Minari datasets with PyTorch Lightning."""

from lit_offrl.algos import BC, IQL, TD3BC, OfflineRLModule
from lit_offrl.data.buffer import Batch
from lit_offrl.data.datamodule import OfflineDataModule

__version__ = "0.1.0"
__all__ = ["BC", "IQL", "TD3BC", "OfflineRLModule", "Batch", "OfflineDataModule"]
