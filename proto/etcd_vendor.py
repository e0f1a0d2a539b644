"""Vendor etcd's own API protos into proto/scheduler/etcdpb/, stripped of what only Go and the HTTP gateway need.

Run once per etcd upgrade: `python proto/etcd_vendor.py ETCD_CHECKOUT` (a clone of github.com/etcd-io/etcd), then
`make proto`. What is stripped: gogoproto, google.api.http and openapiv2 annotations and etcd's own version
annotations (`versionpb`), none of which change the wire format. Import paths become `scheduler/etcdpb/...`, so
protoc writes code that imports inside our package; the proto packages (`etcdserverpb`, `mvccpb`, ...) stay, so the
gRPC method names are etcd's own (`/etcdserverpb.KV/Range`).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

TARGET = Path(__file__).resolve().parent / "scheduler" / "etcdpb"
SOURCES = {
    "api/etcdserverpb/rpc.proto": "rpc.proto",
    "api/mvccpb/kv.proto": "kv.proto",
    "api/authpb/auth.proto": "auth.proto",
    "server/etcdserver/api/v3election/v3electionpb/v3election.proto": "v3election.proto",
}
IMPORTS = {
    "etcd/api/mvccpb/kv.proto": "scheduler/etcdpb/kv.proto",
    "etcd/api/authpb/auth.proto": "scheduler/etcdpb/auth.proto",
    "etcd/api/etcdserverpb/rpc.proto": "scheduler/etcdpb/rpc.proto",
}
DROPPED_IMPORTS = ("gogoproto", "google/api/", "protoc-gen-openapiv2", "versionpb")


def _drop_option_blocks(text: str) -> str:
    """Remove `option (google.api.http) = {...};` and `option (grpc.gateway...) = {...};` (braces may nest)."""
    out, i = [], 0
    pattern = re.compile(r"option\s*\((google\.api\.http|grpc\.gateway[^)]*)\)\s*=\s*\{")
    while (m := pattern.search(text, i)) is not None:
        out.append(text[i:m.start()])
        depth, j = 1, m.end()
        while depth:
            depth += {"{": 1, "}": -1}.get(text[j], 0)
            j += 1
        if text[j:j + 1] == ";":
            j += 1
        i = j
    out.append(text[i:])
    return "".join(out)


def strip(text: str, source: str, commit: str) -> str:
    lines = []
    for line in text.splitlines():
        s = line.strip()
        if s.startswith("import ") and any(d in s for d in DROPPED_IMPORTS):
            continue
        if s.startswith("option go_package") or "(versionpb." in s and s.startswith("option"):
            continue
        if s.startswith("option (gogoproto."):
            continue
        for old, new in IMPORTS.items():
            line = line.replace(f'"{old}"', f'"{new}"')
        line = re.sub(r"\s*\[\((?:gogoproto|versionpb)\.[^\]]*\]", "", line)
        lines.append(line)
    body = _drop_option_blocks("\n".join(lines) + "\n")
    body = re.sub(r"rpc (\w+)\(([^)]*)\) returns \(([^)]*)\) \{\s*\}", r"rpc \1(\2) returns (\3);", body)
    return (f"// Vendored from github.com/etcd-io/etcd {source} at {commit} by proto/etcd_vendor.py: annotations\n"
            f"// stripped, imports re-rooted. Do not edit; re-run the script.\n{body}")


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__.splitlines()[2], file=sys.stderr)
        return 2
    import subprocess

    checkout = Path(argv[1])
    commit = subprocess.run(["git", "-C", str(checkout), "rev-parse", "HEAD"], capture_output=True, text=True,
                            check=False).stdout.strip() or "unknown"
    TARGET.mkdir(parents=True, exist_ok=True)
    for source, name in SOURCES.items():
        (TARGET / name).write_text(strip((checkout / source).read_text(), source, commit))
        print(TARGET / name)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
