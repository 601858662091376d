"""The search tree: nodes are partial completions, edges are reasoning steps; PUCT selection, mean backup."""

from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass
class Node:
    text: str  # the completion so far
    prior: float = 1.0
    parent: Node | None = None
    children: list[Node] = field(default_factory=list)
    visits: int = 0
    value_sum: float = 0.0
    terminal: bool = False  # ended with EOS or reached the token limit
    finished: bool = False  # ended with EOS
    tokens: int = 0  # completion tokens so far

    @property
    def value(self) -> float:
        return self.value_sum / self.visits if self.visits else 0.0

    def puct(self, c_puct: float) -> float:
        """AlphaZero's PUCT: mean value plus an exploration bonus that shrinks with visits."""
        assert self.parent is not None
        return self.value + c_puct * self.prior * math.sqrt(self.parent.visits) / (1 + self.visits)

    def leaves(self) -> list[Node]:
        return [self] if not self.children else [leaf for child in self.children for leaf in child.leaves()]


def select(root: Node, c_puct: float) -> Node:
    """Descend from the root by PUCT to a leaf."""
    node = root
    while node.children:
        node = max(node.children, key=lambda child: child.puct(c_puct))
    return node


def backup(node: Node | None, value: float) -> None:
    while node is not None:
        node.visits += 1
        node.value_sum += value
        node = node.parent
