"""lit_offrl: offline reinforcement learning on Minari datasets with PyTorch Lightning."""

from lit_offrl.algos import BC, IQL, TD3BC, OfflineRLModule
from lit_offrl.data.buffer import Batch
from lit_offrl.data.datamodule import OfflineDataModule

# The recipes register the ids lit_offrl can build locally (lit_offrl.data.registry); the data layer imports none.
import lit_offrl.recipes  # noqa: E402,F401  (after the data layer: recipes import it)

__version__ = "0.1.0"
__all__ = ["BC", "IQL", "TD3BC", "OfflineRLModule", "Batch", "OfflineDataModule"]
