"""Generate scheduler/v1/ from proto/scheduler/v1/*.proto with grpc_tools.protoc (run: `make proto`).

The .proto files live under proto/ with the package path scheduler/v1, so protoc writes
`from scheduler.v1 import types_pb2` imports that resolve inside our own package: nothing is patched by hand.
tests/test_service_proto.py regenerates into a temp dir and fails when the committed code is stale.
"""

from __future__ import annotations

import argparse
import sys
from importlib import resources
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "proto"
PACKAGE = Path("scheduler") / "v1"
# etcd's own API (vendored by proto/etcd_vendor.py) for cluster mode: its own package, so it never mixes with ours.
ETCD_PACKAGE = Path("scheduler") / "etcdpb"
INIT = '"""Code generated from proto/{package} by `make proto` (proto/generate.py). Do not edit."""\n'


def generate(out_root: Path, package: Path = PACKAGE) -> list[Path]:
    """Write the generated package under out_root/<package> and return the files written."""
    sources = sorted((PROTO_ROOT / package).glob("*.proto"))
    if not sources:
        raise SystemExit(f"no .proto files under {PROTO_ROOT / package}")
    target = out_root / package
    target.mkdir(parents=True, exist_ok=True)
    for old in target.glob("*_pb2*.py*"):
        old.unlink()  # a removed .proto must not leave its code behind
    well_known = str(resources.files("grpc_tools") / "_proto")
    args = [
        "grpc_tools.protoc", f"-I{PROTO_ROOT}", f"-I{well_known}",
        f"--python_out={out_root}", f"--pyi_out={out_root}", f"--grpc_python_out={out_root}",
        *(str(s.relative_to(PROTO_ROOT)) for s in sources),
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    (target / "__init__.py").write_text(INIT.format(package=package.as_posix()))
    return sorted(p for p in target.iterdir() if p.is_file())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT, help="root to write scheduler/v1 under (default: repo)")
    args = parser.parse_args()
    for package in (PACKAGE, ETCD_PACKAGE):
        for path in generate(args.out, package):
            print(path.relative_to(args.out))


if __name__ == "__main__":
    sys.exit(main())
