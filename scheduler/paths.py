"""Where the shipped files live (the repository's topology/ and simulations/ beside the package)."""

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TOPOLOGY_DIR = ROOT / "topology"
DEFAULT_TOPOLOGY = TOPOLOGY_DIR / "china-sea.yaml"
SIMULATIONS_DIR = ROOT / "simulations"
