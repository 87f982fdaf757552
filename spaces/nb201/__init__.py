"""NAS-Bench-201: ops, the cell codec, the discrete network and the supernet."""

from spaces.nb201.codec import (
    EDGE_NAMES,
    EDGES,
    NUM_CELLS,
    NUM_EDGES,
    NUM_OPS,
    ArchStringError,
    decode,
    encode,
)
from spaces.nb201.networks import NB201Network, NB201Supernet, discrete_from_supernet
from spaces.nb201.ops import OP_NAMES, PARAMETER_FREE_OPS, BatchNormSettings
from spaces.nb201.space import NB201Space

__all__ = [
    "EDGES",
    "EDGE_NAMES",
    "NUM_CELLS",
    "NUM_EDGES",
    "NUM_OPS",
    "OP_NAMES",
    "PARAMETER_FREE_OPS",
    "ArchStringError",
    "BatchNormSettings",
    "NB201Network",
    "NB201Space",
    "NB201Supernet",
    "decode",
    "discrete_from_supernet",
    "encode",
]
