"""Code generated from proto/scheduler/etcdpb by `make proto` (proto/generate.py). Do not edit."""
