"""Computation DAGs for frequency planning (Perseus): nodes, edges, and schedule builders.

A node is one computation run on one device (a pipeline stage's forward pass of one
microbatch, a decode step's GPU phase). It names its ``computation``, the key of a profile
(``profile.py``) holding its (time, energy) at each frequency; many nodes share one
computation (every microbatch's forward on stage 2 is ``"stage2.forward"``). Edges say
"must finish before": data dependencies and each device's execution order.

>>> dag = one_f_one_b(stages=2, microbatches=2)
>>> len(dag.nodes), dag.topological_order()[:3]
(8, ['s0.f0', 's0.f1', 's1.f0'])
>>> sorted(dag.computations())
['stage0.backward', 'stage0.forward', 'stage1.backward', 'stage1.forward']
"""

from __future__ import annotations

from dataclasses import dataclass, field

from speechlm.core.errors import InputError


class CycleError(InputError):
    """The graph has a cycle; the message names a node on it."""


@dataclass(frozen=True)
class Node:
    """One computation on one device.

    Args:
        name: unique in the DAG, e.g. ``"s2.f17"`` (stage 2, forward of microbatch 17).
        computation: profile key, e.g. ``"stage2.forward"``.
        device: where it runs (``"gpu2"``, ``"cpu"``); one device runs one node at a time.
    """

    name: str
    computation: str
    device: str = "gpu0"


@dataclass
class DAG:
    """Activity-on-node DAG: ``nodes`` by name and ``edges`` (u finishes before v starts)."""

    nodes: dict[str, Node] = field(default_factory=dict)
    edges: set[tuple[str, str]] = field(default_factory=set)

    def add(self, name: str, computation: str, device: str = "gpu0") -> str:
        if name in self.nodes:
            raise ValueError(f"duplicate node {name!r}")
        self.nodes[name] = Node(name, computation, device)
        return name

    def edge(self, u: str, v: str) -> None:
        for n in (u, v):
            if n not in self.nodes:
                raise ValueError(f"edge {u!r} -> {v!r}: unknown node {n!r}")
        if u == v:
            raise CycleError(f"cycle: node {u!r} depends on itself")
        self.edges.add((u, v))

    def computations(self) -> set[str]:
        return {n.computation for n in self.nodes.values()}

    def predecessors(self) -> dict[str, list[str]]:
        preds: dict[str, list[str]] = {n: [] for n in self.nodes}
        for u, v in sorted(self.edges):
            preds[v].append(u)
        return preds

    def topological_order(self) -> list[str]:
        """Kahn's order (ties in insertion order); a cycle raises ``CycleError`` naming a node."""
        indeg = dict.fromkeys(self.nodes, 0)
        succ: dict[str, list[str]] = {n: [] for n in self.nodes}
        for u, v in self.edges:
            indeg[v] += 1
            succ[u].append(v)
        rank = {n: i for i, n in enumerate(self.nodes)}
        ready = [n for n in self.nodes if indeg[n] == 0]
        order: list[str] = []
        while ready:
            ready.sort(key=rank.__getitem__, reverse=True)
            n = ready.pop()
            order.append(n)
            for v in succ[n]:
                indeg[v] -= 1
                if indeg[v] == 0:
                    ready.append(v)
        if len(order) < len(self.nodes):
            stuck = sorted((n for n in self.nodes if indeg[n] > 0), key=rank.__getitem__)
            raise CycleError(f"the DAG has a cycle through node {stuck[0]!r} "
                             f"({len(stuck)} nodes on or after cycles)")
        return order

    def makespan(self, durations: dict[str, float]) -> float:
        """Longest path: the time from the first start to the last finish."""
        finish: dict[str, float] = {}
        preds = self.predecessors()
        for n in self.topological_order():
            finish[n] = max((finish[p] for p in preds[n]), default=0.0) + durations[n]
        return max(finish.values(), default=0.0)

    def merge(self, other: DAG, prefix: str) -> None:
        """Add ``other``'s nodes and edges with ``prefix`` before node names and devices."""
        for n in other.nodes.values():
            self.add(prefix + n.name, n.computation, prefix + n.device)
        for u, v in other.edges:
            self.edge(prefix + u, prefix + v)


def _chain_devices(dag: DAG, per_device: dict[str, list[str]]) -> None:
    for seq in per_device.values():
        for a, b in zip(seq, seq[1:], strict=False):
            dag.edge(a, b)


def _pipeline(stages: int, microbatches: int, order: str) -> DAG:
    if stages < 1 or microbatches < 1:
        raise ValueError(f"stages and microbatches must be >= 1, got {stages}, {microbatches}")
    dag = DAG()
    seqs: dict[str, list[str]] = {}
    for s in range(stages):
        f = [dag.add(f"s{s}.f{m}", f"stage{s}.forward", f"gpu{s}") for m in range(microbatches)]
        b = [dag.add(f"s{s}.b{m}", f"stage{s}.backward", f"gpu{s}") for m in range(microbatches)]
        if order == "gpipe":  # all forwards, then all backwards
            seqs[f"gpu{s}"] = f + b
        else:  # 1F1B: warm-up forwards, steady one-forward-one-backward, cool-down backwards
            warm = min(stages - s - 1, microbatches)
            seq = f[:warm]
            for m in range(microbatches - warm):
                seq += [f[warm + m], b[m]]
            seqs[f"gpu{s}"] = seq + b[microbatches - warm:]
    for s in range(stages):
        for m in range(microbatches):
            if s > 0:
                dag.edge(f"s{s - 1}.f{m}", f"s{s}.f{m}")
                dag.edge(f"s{s}.b{m}", f"s{s - 1}.b{m}")
        if s == stages - 1:
            for m in range(microbatches):
                dag.edge(f"s{s}.f{m}", f"s{s}.b{m}")
    _chain_devices(dag, seqs)
    return dag


def gpipe(stages: int, microbatches: int) -> DAG:
    """GPipe: each stage runs every microbatch's forward, then every backward."""
    return _pipeline(stages, microbatches, "gpipe")


def one_f_one_b(stages: int, microbatches: int) -> DAG:
    """1F1B (PipeDream-flush): stage s warms up with S-s-1 forwards, then alternates."""
    return _pipeline(stages, microbatches, "1f1b")


SCHEDULES = {"gpipe": gpipe, "1f1b": one_f_one_b}


def data_parallel(replica: DAG, replicas: int) -> DAG:
    """``replicas`` copies of one iteration's DAG (``r0/``, ``r1/``...), on their own devices.

    Replicas share computations (one profile). The gradient all-reduce that ends the
    iteration makes every replica wait for the slowest, which is what the extrinsic
    mode's target time (the straggler's) stands for; it is not a node here.
    """
    if replicas < 1:
        raise ValueError(f"replicas must be >= 1, got {replicas}")
    dag = DAG()
    for r in range(replicas):
        dag.merge(replica, f"r{r}/")
    return dag


def decode_loop(steps: int, cpu_phase: bool = False) -> DAG:
    """LLM generation: ``prefill`` then ``steps`` decode steps, one after another.

    With ``cpu_phase`` every step has a GPU phase (``decode.gpu``: attention and resident
    experts) and a CPU phase (``decode.cpu``: offloaded experts computed on the CPU, as in
    Fiddler) running side by side; the next step waits for both.
    """
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    dag = DAG()
    last = [dag.add("prefill", "prefill", "gpu0")]
    for i in range(steps):
        if cpu_phase:
            cur = [dag.add(f"decode{i}.gpu", "decode.gpu", "gpu0"),
                   dag.add(f"decode{i}.cpu", "decode.cpu", "cpu")]
        else:
            cur = [dag.add(f"decode{i}", "decode", "gpu0")]
        for p in last:
            for c in cur:
                dag.edge(p, c)
        last = cur
    return dag
