# Two entry points for a fresh machine with Python 3.11: `make run` and `make test`.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test bench setup proto clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

setup: $(STAMP)

# The main job: check the default topology, start the control plane on loopback, place a sample batch per region
# over gRPC, print the decisions and the routing plan, shut down.
run: $(STAMP)
	$(BIN)/scheduler validate topology/china-sea.yaml
	$(BIN)/scheduler demo --topology topology/china-sea.yaml

test: $(STAMP)
	@# cluster-mode tests start a real etcd (Debian's etcd-server 3.4); CI runs as root on Debian 12
	command -v etcd >/dev/null || (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y etcd-server)
	@# promtool and prometheus (Debian 12's package) check the shipped alert rules and dashboard; the tests start
	@# their own prometheus on a free loopback port and never use the package's service.
	command -v promtool >/dev/null || (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends prometheus)
	$(BIN)/python -m pytest -q

# Benchmarks print ratios against baselines measured in the same run; each ends with one JSON line.
bench: $(STAMP)
	$(BIN)/python benchmarks/placement.py
	$(BIN)/python benchmarks/fleet.py
	$(BIN)/python benchmarks/latency_model.py
	$(BIN)/python benchmarks/calibration.py
	$(BIN)/python benchmarks/grpc_load.py
	$(BIN)/python benchmarks/simulate.py
	$(BIN)/python benchmarks/expand.py
	$(BIN)/python benchmarks/cluster.py

# Regenerate scheduler/v1/ from proto/scheduler/v1/*.proto (the generated code is never edited by hand).
proto: $(STAMP)
	$(BIN)/python proto/generate.py

clean:
	rm -rf $(VENV) .pytest_cache
