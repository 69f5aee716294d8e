"""Dedup decisions in one process: LSH buckets, star edges, components, their split and the keep rule.

The deduped stage (jobs/deduped.py) makes the same decisions with Spark DataFrames at any size;
these functions make them in memory for small sets, for `refinery dedup-eval` and for the tests
that check the Spark stage against them (and against datasketch's `MinHashLSH`).

- Two documents are **candidates** when one of their band keys (corpus/minhash.py `band_keys`)
  is equal. Each bucket (band, key) with several documents becomes a **star**: an edge from every
  member to the bucket's smallest member; a clique would be quadratic in the bucket size.
- With `verify` (a threshold), an edge is kept only if the exact Jaccard similarity of its two
  shingle sets reaches it (corpus/minhash.py `exact_jaccard`; the 112-hash estimate has a
  standard deviation of 0.038 at 0.8, so pairs near the cut fell on either side). Verifying star
  edges against the bucket's smallest member drops a member that is similar to another member
  but not to that one: a few pairs are lost in return for linear work.
- **Components** of the edges; a component's label is its smallest member.
- **Keep rule**: in each cluster the first document in `keep_order` is kept, by default the
  highest `quality` (missing last), then the earliest `fetch_time`, then the smallest `id`.
- **No chaining** (with `verify`): a component is not a cluster as it is, since A~B and B~C put
  A and C together at any distance. Its exact groups, in keep order, are split by `attach`: the
  first unattached group heads a cluster and takes every later unattached group whose Jaccard
  with it reaches the threshold, so a document is dropped as a near duplicate only of a document
  it is verified to be near. Exact groups stay whole. Without `verify` (FineWeb) the component
  is the cluster.
"""

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from corpus.minhash import exact_jaccard

# Columns the keep order may use; `text_length` is the length of `text` in characters.
KEEP_KEYS = ("quality", "fetch_time", "lang_score", "text_length", "id")
DEFAULT_KEEP_ORDER = ("quality desc", "fetch_time asc", "id asc")
DIRECTIONS = ("asc", "desc")


def parse_keep_order(spec: Sequence[str]) -> tuple[tuple[str, bool], ...]:
    """`["quality desc", "fetch_time"]` → `(("quality", True), ("fetch_time", False), ("id", False))`.

    Each item is a column of KEEP_KEYS and an optional direction (asc by default); `id` is
    appended when missing, so the order is total and the choice deterministic.
    """
    order = []
    for item in spec:
        key, _, direction = item.strip().partition(" ")
        direction = direction.strip() or "asc"
        if key not in KEEP_KEYS:
            raise ValueError(f"keep_order: unknown column {key!r}; allowed: {', '.join(KEEP_KEYS)}")
        if direction not in DIRECTIONS:
            raise ValueError(f"keep_order: unknown direction {direction!r} in {item!r}; allowed: asc, desc")
        order.append((key, direction == "desc"))
    if "id" not in {k for k, _ in order}:
        order.append(("id", False))
    return tuple(order)


def buckets(keys: np.ndarray) -> dict[tuple[int, int], list[int]]:
    """Documents (row numbers) per (band, key), for buckets of two or more documents."""
    found: dict[tuple[int, int], list[int]] = defaultdict(list)
    for doc, row in enumerate(keys.tolist()):
        for band, key in enumerate(row):
            found[(band, key)].append(doc)
    return {k: v for k, v in found.items() if len(v) > 1}


def candidate_pairs(keys: np.ndarray) -> set[tuple[int, int]]:
    """Every pair (i < j) of documents that share a bucket: what `MinHashLSH.query` returns."""
    return {
        (a, b) for members in buckets(keys).values() for i, a in enumerate(members) for b in members[i + 1 :]
    }


def star_edges(keys: np.ndarray) -> set[tuple[int, int]]:
    """(member, smallest member) for every other member of every bucket."""
    return {(m, members[0]) for members in buckets(keys).values() for m in members[1:]}


def verified(
    edges: Iterable[tuple[int, int]], sets: Sequence[np.ndarray], threshold: float
) -> set[tuple[int, int]]:
    """The edges whose shingle sets have an exact Jaccard of at least `threshold`."""
    return {(a, b) for a, b in edges if exact_jaccard(sets[a], sets[b]) >= threshold}


def components(n: int, edges: Iterable[tuple[int, int]]) -> np.ndarray:
    """Cluster label (the smallest member) of documents 0..n-1; union-find with path halving."""
    parent = list(range(n))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in edges:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    return np.array([find(x) for x in range(n)], dtype=np.int64)


def cluster(
    exact: Sequence[str],
    keys: np.ndarray | None,
    sets: Sequence[np.ndarray] | None = None,
    verify: float | None = None,
) -> np.ndarray:
    """Component labels as the deduped stage computes them: each document joins the first document
    with its exact hash; LSH star edges (verified on `sets` if `verify` is a threshold) then join
    those representatives. `keys=None`: exact duplicates only."""
    first: dict[str, int] = {}
    edges = []
    for doc, h in enumerate(exact):
        rep = first.setdefault(h, doc)
        if rep != doc:
            edges.append((doc, rep))
    if keys is not None:
        reps = np.array(sorted(first.values()), dtype=np.int64)
        near = {(int(reps[a]), int(reps[b])) for a, b in star_edges(keys[reps])}
        edges.extend(sorted(near if verify is None else verified(near, sets, verify)))
    return components(len(exact), edges)


def members_by_label(labels: Sequence[Any]) -> dict[Any, list[int]]:
    """Documents (row numbers, ascending) per label."""
    members: dict[Any, list[int]] = defaultdict(list)
    for doc, label in enumerate(labels):
        members[label].append(doc)
    return members


def cluster_pairs(labels: Sequence[Any]) -> set[tuple[int, int]]:
    """Every pair (i < j) of documents with the same label."""
    groups = members_by_label(labels).values()
    return {(a, b) for group in groups for i, a in enumerate(group) for b in group[i + 1 :]}


def attach(sets: Sequence[np.ndarray], threshold: float) -> list[int]:
    """For a component's exact groups in keep order (one shingle set each), the position of the
    group heading each one's cluster: greedily, the first unattached group heads a cluster and
    takes every later unattached group whose exact Jaccard with it is at least `threshold`.

    Deterministic for a given order, and no group joins a head it is not near (no chaining). Cost:
    one Jaccard per (group, head) pair, so linear in a component of true duplicates of one page.
    """
    head = [-1] * len(sets)
    for i, candidate in enumerate(sets):
        if head[i] >= 0:
            continue
        head[i] = i
        for j in range(i + 1, len(sets)):
            if head[j] < 0 and exact_jaccard(candidate, sets[j]) >= threshold:
                head[j] = i
    return head


def split_component(
    members: Sequence[int], exact: Sequence[str], sets: Sequence[np.ndarray] | None, threshold: float | None
) -> list[list[int]]:
    """A component's clusters, each in keep order (its kept document first); `members` in keep order.

    Without `threshold` the component is one cluster; with it, its exact groups are split by `attach`.
    """
    if threshold is None:
        return [list(members)]
    groups: dict[str, list[int]] = {}
    for i in members:  # groups in the order of their first (best) member
        groups.setdefault(exact[i], []).append(i)
    ordered = list(groups.values())
    clusters: dict[int, list[int]] = {}
    for group, head in zip(ordered, attach([sets[g[0]] for g in ordered], threshold), strict=True):
        clusters.setdefault(head, []).extend(group)  # the head group comes first: it is earlier
    return list(clusters.values())


def _sort_key(doc: Mapping[str, Any], order: tuple[tuple[str, bool], ...]) -> tuple:
    key: list[Any] = []
    for column, descending in order:
        value = len(doc.get("text") or "") if column == "text_length" else doc.get(column)
        if value is None:
            key.append((1, 0))  # missing values sort last in either direction
        elif descending:
            key.append((0, _Reversed(value)))
        else:
            key.append((0, value))
    return tuple(key)


class _Reversed:
    """Wraps a value so that sorting ascending puts larger values first."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __lt__(self, other: "_Reversed") -> bool:
        return other.value < self.value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Reversed) and self.value == other.value


def keep_decisions(
    docs: Sequence[Mapping[str, Any]],
    labels: np.ndarray,
    exact: Sequence[str],
    keep_order: Sequence[str],
    sets: Sequence[np.ndarray] | None = None,
    threshold: float | None = None,
) -> list[dict[str, Any]]:
    """Per document: `cluster_id` (the kept document's id), `cluster_size` and `reject`.

    The stage's decisions in one process (the reference for jobs/deduped.py, and what
    `refinery dedup-eval` scores): each component of `labels` is split by `split_component`, and a
    rejected document is `duplicate:exact` when its exact hash is the kept document's, else
    `duplicate:near`.
    """
    order = parse_keep_order(keep_order)
    out: list[dict[str, Any]] = [{} for _ in docs]
    for members in members_by_label(labels.tolist()).values():
        members.sort(key=lambda i: _sort_key(docs[i], order))
        for group in split_component(members, exact, sets, threshold):
            kept = group[0]
            for i in group:
                reject = None
                if i != kept:
                    reject = "duplicate:exact" if exact[i] == exact[kept] else "duplicate:near"
                out[i] = {"cluster_id": docs[kept]["id"], "cluster_size": len(group), "reject": reject}
    return out
