"""The topology schema and its loader."""
