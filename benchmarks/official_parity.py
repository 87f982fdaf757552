"""Your NAS-Bench-201 checkpoint in xautodl's search model: the same logits?

Loads a harness checkpoint (a ``.pt`` under ``results/runs/<key>/``), builds xautodl's
``TinyNetworkDarts`` (the official NAS-Bench-201 search model) of the same shape and
BatchNorm settings, maps the weights and alphas onto it (``spaces.nb201.official``) and
prints the largest logit difference on random images in train-mode and eval-mode BatchNorm,
in float32 and float64. A cell without convolution bias (``space.cell_conv_bias=false``,
DARTS-PT's protocol) gets zero biases in xautodl's model, whose convolutions always carry
one before affine-free BatchNorm.

    pip install --no-deps xautodl
    python benchmarks/official_parity.py --checkpoint results/runs/KEY/epoch-030.pt [--images 32]

Without --checkpoint it builds a fresh supernet of --preset's shape. The tests
(tests/test_official_parity.py) check the same on tiny supernets, plus N training steps
against xautodl's DARTS-V1 step; this script is for checkpoints of real shape.
"""

from __future__ import annotations

import argparse
import copy
import platform
import sys

import torch

from harness.checkpoints import build_supernet, load_supernet
from harness.experiment import build_config
from spaces.nb201 import official


def xautodl_model(config, state):
    try:
        from xautodl.models.cell_operations import NAS_BENCH_201
        from xautodl.models.cell_searchs.search_model_darts import TinyNetworkDarts
    except ImportError:
        sys.exit("xautodl is not installed: pip install --no-deps xautodl")
    space = config.space
    model = TinyNetworkDarts(space.channels, space.cells_per_stage, 4, 10, NAS_BENCH_201,
                             space.cell_bn_affine, space.cell_bn_track_stats)  # fmt: skip
    mapped = official.to_xautodl(state)
    for name, value in model.state_dict().items():
        if name not in mapped and name.endswith(".op.1.bias"):
            mapped[name] = torch.zeros_like(value)  # bias-free cells: zero bias there
    model.load_state_dict(mapped)
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint")
    parser.add_argument("--preset", default="proxy")
    parser.add_argument("--images", type=int, default=32)
    args = parser.parse_args()
    if args.checkpoint:
        loaded = load_supernet(args.checkpoint, "cpu")
        config, supernet = loaded.config, loaded.supernet
    else:
        config = build_config(args.preset)
        torch.manual_seed(0)
        supernet = build_supernet(config.space, 10, config.compute)
    if config.space.name != "nb201" or config.space.ops or config.space.edge_ops:
        sys.exit("only full NAS-Bench-201 supernets have an official search model to compare")
    print(f"checkpoint: {args.checkpoint or 'fresh ' + args.preset}; torch {torch.__version__}, "
          f"{platform.machine()}, {torch.get_num_threads()} threads")  # fmt: skip
    generator = torch.Generator().manual_seed(0)
    size = config.data.resolution
    images = torch.randn(args.images, 3, size, size, generator=generator)
    for dtype in (torch.float32, torch.float64):
        ours = copy.deepcopy(supernet).to(dtype)
        theirs = xautodl_model(config, supernet.state_dict()).to(dtype)
        for mode in ("train", "eval"):
            ours.train(mode == "train")
            theirs.train(mode == "train")
            with torch.no_grad():
                difference = (ours(images.to(dtype)) - theirs(images.to(dtype))[1]).abs().max()
            print(f"{str(dtype).split('.')[1]:8s} {mode:5s}-mode BatchNorm: largest logit "
                  f"difference {float(difference):.3e}")  # fmt: skip


if __name__ == "__main__":
    main()
