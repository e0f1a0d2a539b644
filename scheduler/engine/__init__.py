"""Placement engine: filter -> score -> solve -> explain, usable without gRPC."""
