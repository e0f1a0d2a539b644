"""The gRPC control plane: servicers that translate between proto messages and engine types, the topology reload
watcher, the server assembly and a client helper. Nothing below imports this package."""
