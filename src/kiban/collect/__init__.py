"""Collecting sources into the lake: connectors read, the loader lands committed loads (docs/collect.md)."""
