"""Code generated from proto/scheduler/v1 by `make proto` (proto/generate.py). Do not edit."""
