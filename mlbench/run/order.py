"""The order in which a sweep's cells run: frameworks interleaved, never one framework's block.

Owns `interleave`. Running all PyTorch cells, then all TensorFlow cells, then all JAX cells
confounds machine drift (thermal state, a neighbour's load, page cache) with the framework.
Instead, cells are grouped by what they measure apart from the framework
(model, device, batch size, precision); within a group the frameworks run one after another,
and the framework that goes first rotates from group to group, so no framework is always first
(after a cooler pause) or always last. Repeats interleave too: repeat 0 of every cell runs before
repeat 1 of any. Must not import any ML framework.
"""
from __future__ import annotations

from typing import Sequence

from .matrix import Cell


def _group(cell: Cell) -> tuple:
    return cell.model.id_label, cell.device, cell.batch_size, cell.precision


def interleave(cells: Sequence[Cell]) -> list[Cell]:
    """`cells` (any subset of a sweep, e.g. what a resume still has to run) in run order: by
    repeat, then by group in first-seen order; within a group each framework once, in a
    rotation of the frameworks' first-seen order.

    The rotation of each group is chosen greedily: keep the count of groups each framework
    opened within 2 of the others' (who goes first rotates), then avoid starting with the
    framework that just ran (so no framework's cells form one block), then the framework that
    opened fewest groups, then the next one after the previous opener. With three or more
    frameworks this is plain rotation (group g opens with framework g mod n); with two it is
    AB AB BA BA ..."""
    rank: dict[str, int] = {}
    groups: dict[tuple, int] = {}
    for c in cells:
        rank.setdefault(c.framework, len(rank))
        groups.setdefault(_group(c), len(groups))
    by_slot: dict[tuple, list[Cell]] = {}
    for c in cells:
        by_slot.setdefault((c.repeat, groups[_group(c)]), []).append(c)
    opened = {fw: 0 for fw in rank}
    ordered: list[Cell] = []
    prev_first = -1
    for slot in sorted(by_slot):
        members = sorted(by_slot[slot], key=lambda c: rank[c.framework])
        last = ordered[-1].framework if ordered else None

        def cost(shift: int) -> tuple:
            first = members[shift].framework
            after = {**opened, first: opened[first] + 1}
            return (max(after.values()) - min(after.values()) > 2, first == last,
                    opened[first], (rank[first] - prev_first - 1) % len(rank))

        shift = min(range(len(members)), key=cost)
        ordered.extend(members[shift:] + members[:shift])
        opened[members[shift].framework] += 1
        prev_first = rank[members[shift].framework]
    return ordered


def as_record(cells: Sequence[Cell]) -> list[list]:
    """The order as run.json stores it: [[cell_id, repeat], ...]."""
    return [[c.cell_id, c.repeat] for c in cells]
