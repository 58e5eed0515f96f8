"""Transitions as tensors, and the seeded infinite streams of uniformly sampled minibatches: single transitions
(`RandomBatchStream`) and H-step chunks of consecutive transitions inside one episode (`RandomSequenceStream`)."""

from __future__ import annotations

import copy
from collections.abc import Iterator, Sequence
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


class SequenceBatch(NamedTuple):
    """A minibatch of B chunks of H consecutive transitions of one episode each (time is axis 1).

    obs (B, H, obs_dim) holds s_t .. s_{t+H-1}, action (B, H, action_dim), reward (B, H), next_obs (B, H, obs_dim)
    s_{t+1} .. s_{t+H}, terminal (B, H). A chunk never crosses an episode end, so every step is valid and only
    the last step can be terminal: `done` says whether the chunk ended in a termination (no bootstrapping
    from `last_next_obs`, the state after the chunk); a truncated episode end is not `done`.
    """

    obs: Tensor
    action: Tensor
    reward: Tensor
    next_obs: Tensor
    terminal: Tensor

    @property
    def first_obs(self) -> Tensor:
        """The state the chunk starts in, s_t: (B, obs_dim)."""
        return self.obs[:, 0]

    @property
    def last_next_obs(self) -> Tensor:
        """The state after the chunk, s_{t+H}: (B, obs_dim)."""
        return self.next_obs[:, -1]

    @property
    def done(self) -> Tensor:
        """1.0 where the episode terminated within the chunk: (B,)."""
        return self.terminal.amax(1)

    @property
    def horizon(self) -> int:
        return self.reward.shape[1]

    @classmethod
    def from_batch(cls, batch: Batch) -> SequenceBatch:
        """A batch of single transitions as chunks of length 1."""
        return cls(batch.obs.unsqueeze(1), batch.action.unsqueeze(1), batch.reward.unsqueeze(1),
                   batch.next_obs.unsqueeze(1), batch.terminal.unsqueeze(1))


_ROW_FIELDS = ("obs", "action", "reward", "next_obs", "terminal", "next_action")


def pack_rows(fields: Sequence[Tensor]) -> Tensor:
    """Per-transition fields, (N,) or (N, width) each, side by side in one (N, F) tensor: one row per transition."""
    return torch.cat([f.reshape(len(f), -1) for f in fields], dim=1)


def split_rows(rows: Tensor, widths: Sequence[int], vectors: Sequence[bool]) -> list[Tensor]:
    """Rows (..., F) -> the fields as views: (...) for per-transition scalars (`vectors`), (..., width) otherwise."""
    parts = rows.split(list(widths), dim=-1)
    return [part.squeeze(-1) if vector else part for vector, part in zip(vectors, parts)]


@dataclass
class Transitions:
    """All transitions of a dataset as tensors, with episode bounds kept for sequence sampling.

    The per-transition fields live side by side in one (N, F) tensor, one row per transition, and `obs`,
    `action`, ... are column views of it: a minibatch is one `index_select` of B rows (one random access per
    transition instead of one per field, 5-6x faster on a 1M-transition CPU buffer) split back into views.
    Fields of different dtypes are kept apart and gathered one by one.
    """

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
        fields = [getattr(self, name) for name in _ROW_FIELDS]
        self._widths = [1 if f.dim() == 1 else f.shape[1] for f in fields]
        self._vectors = [f.dim() == 1 for f in fields]
        packable = (len(self) > 0 and len({(f.dtype, f.device) for f in fields}) == 1
                    and all(f.dim() in (1, 2) and len(f) == len(self) for f in fields))
        self._rows = pack_rows(fields) if packable else None
        if self._rows is not None:
            self._set_views()

    def _set_views(self) -> None:
        for name, view in zip(_ROW_FIELDS, self._split(self._rows)):
            setattr(self, name, view)

    def _split(self, rows: Tensor) -> list[Tensor]:
        return split_rows(rows, self._widths, self._vectors)

    def __len__(self) -> int:
        return self.reward.shape[0]

    def to(self, device: torch.device | str) -> Transitions:
        if self._rows is None:
            return Transitions(**{name: getattr(self, name).to(device) for name in self.__dataclass_fields__})
        moved = copy.copy(self)
        moved._rows = self._rows.to(device)
        moved.episode_starts, moved.episode_ends = self.episode_starts.to(device), self.episode_ends.to(device)
        moved._set_views()
        return moved

    def batch(self, index: Tensor) -> Batch:
        index = index.to(self.reward.device, non_blocking=True)
        if self._rows is not None:
            return Batch(*self._split(self._rows.index_select(0, index)))
        return Batch(self.obs[index], self.action[index], self.reward[index], self.next_obs[index],
                     self.terminal[index], self.next_action[index])

    def sequence_starts(self, length: int) -> Tensor:
        """Indices t (ascending) whose chunk t, ..., t + length - 1 lies inside one episode."""
        episode_end = torch.repeat_interleave(self.episode_ends, self.episode_ends - self.episode_starts)
        return torch.nonzero(torch.arange(len(self), device=episode_end.device) + length <= episode_end).squeeze(1)

    def sequences(self, start: Tensor, length: int) -> SequenceBatch:
        """The chunks of `length` consecutive transitions beginning at `start` (B,): one gather."""
        start = start.to(self.reward.device, non_blocking=True)
        index = start.unsqueeze(1) + torch.arange(length, device=start.device)
        if self._rows is not None:
            return SequenceBatch(*self._split(self._rows[index])[:5])
        return SequenceBatch(self.obs[index], self.action[index], self.reward[index], self.next_obs[index],
                             self.terminal[index])


def split_group(group: Batch | SequenceBatch, size: int) -> list:
    """Cut a batch of `size` x B rows (one gather) into `size` batches of B rows: views, no copy."""
    fields = [None if f is None else f.view(size, -1, *f.shape[1:]).unbind(0) for f in group]
    return [type(group)(*(None if f is None else f[k] for f in fields)) for k in range(size)]


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

    def __init__(self, transitions: Transitions, batch_size: int, seed: int, rank: int, state: SamplerState,
                 group: int = 1):
        self.transitions, self.batch_size, self.seed, self.rank, self.state = transitions, batch_size, seed, rank, state
        self.group = group
        self.generator = torch.Generator()  # reseeded for every batch

    def indices(self, index: int) -> Tensor:
        self.generator.manual_seed(batch_seed(self.seed, self.rank, index))
        return torch.randint(len(self.transitions), (self.batch_size,), generator=self.generator)

    def __iter__(self) -> Iterator[Batch] | Iterator[list[Batch]]:
        index = self.state.consumed
        while True:
            if self.group == 1:
                yield self.transitions.batch(self.indices(index))
            else:  # batches index .. index + group - 1, exactly as above, drawn with one gather
                rows = torch.cat([self.indices(index + k) for k in range(self.group)])
                yield split_group(self.transitions.batch(rows), self.group)
            index += self.group


class RandomSequenceStream(IterableDataset):
    """An infinite stream of `SequenceBatch`es: `batch_size` chunks of `sequence_length` consecutive transitions.

    Chunk starts are drawn uniformly with replacement among the starts whose chunk stays inside one episode
    (each such chunk equally likely; episodes shorter than the chunk contribute none), with one `randint` and
    one gather. Same seeding contract as `RandomBatchStream`: batch i of rank r is a pure function of
    (seed, r, i), so a stream resumed at batch `state.consumed` continues exactly.
    """

    def __init__(self, transitions: Transitions, batch_size: int, sequence_length: int, seed: int, rank: int,
                 state: SamplerState, group: int = 1):
        self.transitions, self.batch_size, self.sequence_length = transitions, batch_size, sequence_length
        self.seed, self.rank, self.state, self.group = seed, rank, state, group
        # Kept on the CPU, where the seeded generator draws; the gather itself runs where the transitions are.
        self.starts = transitions.sequence_starts(sequence_length).cpu()
        assert len(self.starts) > 0, f"no episode has {sequence_length} transitions"
        self.generator = torch.Generator()  # reseeded for every batch

    def indices(self, index: int) -> Tensor:
        """Start indices of the chunks of batch `index`."""
        self.generator.manual_seed(batch_seed(self.seed, self.rank, index))
        return self.starts[torch.randint(len(self.starts), (self.batch_size,), generator=self.generator)]

    def __iter__(self) -> Iterator[SequenceBatch] | Iterator[list[SequenceBatch]]:
        index = self.state.consumed
        while True:
            if self.group == 1:
                yield self.transitions.sequences(self.indices(index), self.sequence_length)
            else:
                starts = torch.cat([self.indices(index + k) for k in range(self.group)])
                yield split_group(self.transitions.sequences(starts, self.sequence_length), self.group)
            index += self.group
