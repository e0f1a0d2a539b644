"""Subcommands of the `scheduler` CLI, one module each."""
