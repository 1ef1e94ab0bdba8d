"""The asset graph: edges inferred from SQL, selection syntax."""

from kiban.graph.dag import Graph, build_graph
from kiban.graph.selection import select

__all__ = ["Graph", "build_graph", "select"]
