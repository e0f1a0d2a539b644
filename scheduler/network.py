"""The network as a networkx graph: latency between sites and user regions, the paths and cables they use.

A `NetworkModel` is immutable: cutting or repairing a cable returns a new model (rebuilding a graph of a few
hundred edges and re-running one Dijkstra per region takes milliseconds), so readers never see a half-cut network.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from itertools import islice

import networkx as nx

from scheduler.model.schema import Status, Topology


@dataclass(frozen=True)
class Edge:
    """A terrestrial link or one segment of a submarine cable."""

    id: str
    a: str
    b: str
    one_way_ms: float
    cable: str | None
    capacity_gbps: float | None
    transit_cny_per_gb: float
    up: bool


@dataclass(frozen=True)
class Route:
    """The lowest-latency way from a region to a site."""

    region: str
    site: str
    rtt_ms: float
    nodes: tuple[str, ...]
    edges: tuple[str, ...]
    cables: tuple[str, ...]
    transit_cny_per_gb: float


def link_id(a: str, b: str) -> str:
    return f"{a}~{b}"


def edges_of(topology: Topology) -> list[Edge]:
    fiber = topology.settings.fiber_ms_per_km
    out = [
        Edge(link_id(l.a, l.b), l.a, l.b, l.latency_ms or l.length_km * fiber, None, l.capacity_gbps,
             l.transit_cny_per_gb, l.status is Status.up)
        for l in topology.links
    ]
    for c in topology.cables:
        for j, s in enumerate(c.segments):
            out.append(
                Edge(f"{c.id}#{j}", s.a, s.b, s.latency_ms or s.length_km * fiber, c.id, c.capacity_gbps,
                     c.transit_cny_per_gb, c.status is Status.up and s.status is Status.up)
            )
    return out


@dataclass(frozen=True)
class NetworkModel:
    topology: Topology
    overrides: Mapping[str, bool] = field(default_factory=dict)
    """cable id, link id (`a~b`) or segment id (`cable#j`) -> up; wins over the file's status."""

    @cached_property
    def edges(self) -> dict[str, Edge]:
        return {e.id: e for e in edges_of(self.topology)}

    @cached_property
    def cables(self) -> dict[str, tuple[str, ...]]:
        return {c.id: tuple(f"{c.id}#{j}" for j in range(len(c.segments))) for c in self.topology.cables}

    def is_up(self, edge: Edge) -> bool:
        for key in (edge.id, edge.cable):
            if key is not None and key in self.overrides:
                return self.overrides[key]
        return edge.up

    @cached_property
    def graph(self) -> nx.Graph:
        """Up edges only; of parallel edges between two nodes the fastest is kept (it is the one paths use)."""
        g = nx.Graph()
        g.add_nodes_from(n.id for n in (*self.topology.sites, *self.topology.nodes, *self.topology.regions))
        for e in self.edges.values():
            if not self.is_up(e):
                continue
            current = g.get_edge_data(e.a, e.b)
            if current is None or e.one_way_ms < current["ms"]:
                g.add_edge(e.a, e.b, ms=e.one_way_ms, id=e.id)
        return g

    def with_status(self, ids: Iterable[str], up: bool) -> NetworkModel:
        """A copy with cables/links/segments cut (up=False) or repaired (up=True)."""
        overrides = dict(self.overrides)
        for key in ids:
            if key not in self.edges and key not in self.cables:
                raise KeyError(f"unknown cable or link {key!r}")
            overrides[key] = up
        return NetworkModel(self.topology, overrides)

    def down_cables(self) -> set[str]:
        return {c for c, segs in self.cables.items() if not any(self.is_up(self.edges[s]) for s in segs)}

    def _route(self, region: str, site: str, nodes: list[str], ms: float) -> Route:
        edge_ids = tuple(self.graph.edges[a, b]["id"] for a, b in zip(nodes, nodes[1:]))
        cables = tuple(dict.fromkeys(c for e in edge_ids if (c := self.edges[e].cable)))
        transit = sum(self.edges[e].transit_cny_per_gb for e in edge_ids)
        return Route(region, site, 2 * ms, tuple(nodes), edge_ids, cables, transit)

    @cached_property
    def routes(self) -> dict[tuple[str, str], Route]:
        """(region, site) -> lowest-latency route, for every site reachable over up edges."""
        sites = {s.id for s in self.topology.sites}
        out = {}
        for region in self.topology.regions:
            dist, paths = nx.single_source_dijkstra(self.graph, region.id, weight="ms")
            for node, ms in dist.items():
                if node in sites:
                    out[region.id, node] = self._route(region.id, node, paths[node], ms)
        return out

    def route(self, region: str, site: str) -> Route | None:
        return self.routes.get((region, site))

    def rtt_ms(self, a: str, b: str) -> float:
        """Round trip between any two nodes over up edges; inf when they are cut off from each other."""
        try:
            return 2 * nx.dijkstra_path_length(self.graph, a, b, weight="ms")
        except nx.NetworkXNoPath:
            return float("inf")

    def alternatives(self, region: str, site: str, k: int = 3) -> list[Route]:
        """The k lowest-latency loop-free routes, best first (Yen's algorithm in networkx)."""
        try:
            paths = nx.shortest_simple_paths(self.graph, region, site, weight="ms")
            return [
                self._route(region, site, p, nx.path_weight(self.graph, p, "ms")) for p in islice(paths, k)
            ]
        except nx.NetworkXNoPath:
            return []
