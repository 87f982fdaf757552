"""Size of a genotype's evaluation network: parameters (with and without the auxiliary head)
and multiply-adds of one image, at DARTS's CIFAR-10 evaluation shape by default.

    python benchmarks/genotype_size.py                      # the published DARTS-V2 cell
    python benchmarks/genotype_size.py --genotype "Genotype(...)" --channels 16 --layers 8
"""

from __future__ import annotations

import argparse

from harness.flops import count_multiply_adds
from spaces.darts.genotype import DARTS_V2, parse_genotype
from spaces.darts.networks import DartsEvalNetwork, parameter_count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--genotype", help="a DARTS genotype (default: DARTS-V2)")
    parser.add_argument("--channels", type=int, default=36)
    parser.add_argument("--layers", type=int, default=20)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--resolution", type=int, default=32)
    args = parser.parse_args()
    genotype = parse_genotype(args.genotype) if args.genotype else DARTS_V2
    auxiliary = args.resolution == 32  # the head is built for the 8x8 maps of 32x32 images
    net = DartsEvalNetwork(genotype, args.channels, args.layers, args.classes, auxiliary=auxiliary)
    madds = count_multiply_adds(net, (3, args.resolution, args.resolution))
    print(f"genotype: {'DARTS-V2' if not args.genotype else args.genotype}")
    print(f"shape: C={args.channels}, {args.layers} cells, {args.classes} classes, "
          f"{args.resolution}x{args.resolution} input")  # fmt: skip
    print(f"parameters without the auxiliary head: {parameter_count(net):,}")
    if auxiliary:
        print(f"parameters with the auxiliary head:    {parameter_count(net, auxiliary=True):,}")
    print(f"multiply-adds of one image (conv + linear, auxiliary head excluded): {madds:,}")


if __name__ == "__main__":
    main()
