"""Chat samples to token batches: assistant-only labels, optional packing, and a
deterministic, resumable order sharded over ranks.

A sample is tokenized exactly as it is generated at inference: the chat template's
prompt with the generation prompt, then the response and the end-of-turn token; only the
response tokens (and that end token) carry labels. Packing concatenates whole samples
into rows of at most `max_len` tokens with per-sample position ids, which transformers
turns into a block-diagonal causal mask (no attention across samples).
"""
from __future__ import annotations

import functools
import random
from dataclasses import dataclass
from typing import Iterable, Sequence

IGNORE = -100


@dataclass
class Example:
    input_ids: list[int]
    labels: list[int]  # IGNORE where no loss
    position_ids: list[int]

    def __len__(self) -> int:
        return len(self.input_ids)

    @functools.cached_property
    def n_targets(self) -> int:  # rows are built once; counted once (the step loop asks every step)
        return sum(1 for t in self.labels if t != IGNORE)


def prompt_ids(tokenizer, messages: Sequence[dict]) -> list[int]:
    out = tokenizer.apply_chat_template(list(messages), add_generation_prompt=True, tokenize=True)
    return list(out["input_ids"] if hasattr(out, "keys") else out)


def tokenize_chat(tokenizer, messages: Sequence[dict], response: str, max_len: int) -> Example:
    """(prompt, response) -> ids with labels on the response and end-of-turn token only.
    Too-long samples are cut at `max_len` (the prompt's head is kept)."""
    prompt = prompt_ids(tokenizer, messages)
    answer = tokenizer(response, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    ids = (prompt + answer)[:max_len]
    labels = ([IGNORE] * len(prompt) + answer)[:max_len]
    return Example(ids, labels, list(range(len(ids))))


def tokenize_all(tokenizer, samples: Iterable[dict], max_len: int) -> list[Example]:
    return [tokenize_chat(tokenizer, s["messages"], s["response"], max_len) for s in samples]


def pack(examples: Sequence[Example], max_len: int) -> list[Example]:
    """Greedy in order: start a new row when the next sample does not fit."""
    rows: list[Example] = []
    cur = Example([], [], [])
    for ex in examples:
        if len(cur) and len(cur) + len(ex) > max_len:
            rows.append(cur)
            cur = Example([], [], [])
        cur.input_ids += ex.input_ids
        cur.labels += ex.labels
        cur.position_ids += ex.position_ids
    if len(cur):
        rows.append(cur)
    return rows


def collate(examples: Sequence[Example], pad_id: int, packed: bool) -> dict:
    """Right-pad to the longest row. Packed rows get no attention mask (their position
    ids delimit the samples); the padding of a packed row is a separate, masked-out
    "sample" through its own position ids and labels."""
    import torch

    width = max(len(e) for e in examples)
    ids, labels, pos, mask = [], [], [], []
    for e in examples:
        pad = width - len(e)
        ids.append(e.input_ids + [pad_id] * pad)
        labels.append(e.labels + [IGNORE] * pad)
        pos.append(e.position_ids + list(range(pad)))
        mask.append([1] * len(e) + [0] * pad)
    batch = {"input_ids": torch.tensor(ids), "labels": torch.tensor(labels), "position_ids": torch.tensor(pos)}
    if not packed:
        batch["attention_mask"] = torch.tensor(mask)
    return batch


class StepSampler:
    """Which rows each rank trains on at each optimizer step, as a function of
    (seed, position) only, so a resumed run continues the exact sequence.

    The row stream is the concatenation of per-epoch permutations (seeded by epoch); an
    optimizer step consumes `global_batch = micro * accum * world` rows, and rank r takes
    micro-batch k of the step from rows [(k * world + r) * micro, ... + micro). The state
    is the number of rows consumed so far.
    """

    def __init__(self, n_rows: int, seed: int, micro: int, accum: int, world: int, rank: int):
        if n_rows < 1:
            raise ValueError("no training rows")
        self.n, self.seed, self.micro, self.accum, self.world, self.rank = n_rows, seed, micro, accum, world, rank
        self.consumed = 0
        self._perm: tuple[int, list[int]] | None = None

    @property
    def global_batch(self) -> int:
        return self.micro * self.accum * self.world

    @property
    def epoch(self) -> float:
        return self.consumed / self.n

    def _row(self, i: int) -> int:
        epoch, pos = divmod(i, self.n)
        if self._perm is None or self._perm[0] != epoch:
            order = list(range(self.n))
            random.Random(self.seed * 1000003 + epoch).shuffle(order)
            self._perm = (epoch, order)
        return self._perm[1][pos]

    def advance(self) -> list[list[list[int]]]:
        """Every rank's micro-batches for the next step, [rank][micro-batch] -> row indices;
        advances the position."""
        start = self.consumed
        self.consumed += self.global_batch
        out = []
        for r in range(self.world):
            out.append([[self._row(start + (k * self.world + r) * self.micro + j) for j in range(self.micro)]
                        for k in range(self.accum)])
        return out

    def next_step(self) -> list[list[int]]:
        """This rank's micro-batches for the next step; advances the position."""
        return self.advance()[self.rank]

    def state_dict(self) -> dict:
        return {"consumed": self.consumed, "n_rows": self.n, "seed": self.seed, "global_batch": self.global_batch}

    def load_state_dict(self, state: dict) -> None:
        if state["n_rows"] != self.n or state["seed"] != self.seed:
            raise ValueError(f"the data changed since the checkpoint ({state} vs {self.state_dict()})")
        self.consumed = int(state["consumed"])
