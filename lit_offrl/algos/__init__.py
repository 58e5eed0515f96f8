"""The algorithms, one file each; all subclass `OfflineRLModule`."""

from lit_offrl.algos.base import OfflineRLModule
from lit_offrl.algos.bc import BC
from lit_offrl.algos.iql import IQL
from lit_offrl.algos.td3bc import TD3BC

__all__ = ["OfflineRLModule", "BC", "IQL", "TD3BC"]
