"""Transitions as tensors, and the seeded infinite stream of uniformly sampled minibatches."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor
from torch.utils.data import IterableDataset


class Batch(NamedTuple):
    """A minibatch of transitions. Actions are normalized to [-1, 1]; observations as the data module stores them.

    `next_action` is the dataset's action at s' (ReBRAC's critic penalty needs it); at an episode's last step,
    where the data has no next action, it repeats `action`.
    """

    obs: Tensor
    action: Tensor
    reward: Tensor
    next_obs: Tensor
    terminal: Tensor
    next_action: Tensor | None = None


@dataclass
class Transitions:
    """All transitions of a dataset as tensors, with episode bounds kept for sequence sampling."""

    obs: Tensor
    action: Tensor
    reward: Tensor
    next_obs: Tensor
    terminal: Tensor
    episode_starts: Tensor
    episode_ends: Tensor
    next_action: Tensor | None = None

    def __post_init__(self) -> None:
        if self.next_action is None:
            last_steps = self.episode_ends - 1
            following = torch.arange(1, len(self) + 1, device=self.action.device).clamp_max(max(len(self) - 1, 0))
            following[last_steps] = last_steps
            self.next_action = self.action[following]

    def __len__(self) -> int:
        return self.reward.shape[0]

    def to(self, device: torch.device | str) -> Transitions:
        return Transitions(**{name: getattr(self, name).to(device) for name in self.__dataclass_fields__})

    def batch(self, index: Tensor) -> Batch:
        index = index.to(self.reward.device, non_blocking=True)
        return Batch(self.obs[index], self.action[index], self.reward[index], self.next_obs[index],
                     self.terminal[index], self.next_action[index])


def batch_seed(seed: int, rank: int, index: int) -> int:
    """A distinct 63-bit seed for batch `index` of rank `rank` in a run seeded with `seed`."""
    return ((seed * 1_000_003 + rank) * 0x9E3779B97F4A7C15 + index * 0xBF58476D1CE4E5B9) % (2**63 - 1)


class SamplerState:
    """How many batches of the stream the training loop has consumed: this is what a checkpoint stores."""

    def __init__(self) -> None:
        self.consumed = 0


class RandomBatchStream(IterableDataset):
    """An infinite stream of minibatches of `batch_size` transitions drawn uniformly with replacement.

    Batch i of rank r is a pure function of (seed, r, i): ranks draw different batches, a run is
    reproducible from its seed, and resuming at batch `state.consumed` continues the stream exactly, however
    far ahead the data loader prefetched before the checkpoint was written.
    """

    def __init__(self, transitions: Transitions, batch_size: int, seed: int, rank: int, state: SamplerState):
        self.transitions, self.batch_size, self.seed, self.rank, self.state = transitions, batch_size, seed, rank, state

    def indices(self, index: int) -> Tensor:
        generator = torch.Generator().manual_seed(batch_seed(self.seed, self.rank, index))
        return torch.randint(len(self.transitions), (self.batch_size,), generator=generator)

    def __iter__(self) -> Iterator[Batch]:
        index = self.state.consumed
        while True:
            yield self.transitions.batch(self.indices(index))
            index += 1
