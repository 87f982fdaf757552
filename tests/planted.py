"""A supernet whose right answer is known by construction.

Alphas favour ``skip_connect`` on every edge, but the class signal reaches the
classifier only through the 3x3 convolution on edge ``3<-0`` of the first cell:

* images are constant colours: class 0 is pure red, class 1 pure green;
* the stem copies R to channel 0 and G to channel 1 (channels 2, 3 stay zero);
* that one convolution copies channel 0 -> 2 and 1 -> 3; every other convolution
  in every cell and reduction block outputs zero (BatchNorm gamma = beta = 0);
* reduction blocks pass channels through (identity 1x1 shortcut);
* the classifier reads channels 2 and 3 only.

So removing that convolution drops accuracy to chance, and making it the edge's only
op lowers the loss, while argmax-alpha says ``skip_connect``.
"""

from __future__ import annotations

import torch

from harness.data import Batches
from harness.search_data import SearchData
from spaces.nb201 import OP_NAMES, BatchNormSettings, NB201Space, NB201Supernet
from spaces.nb201.networks import SearchCell
from spaces.nb201.ops import ReLUConvBN, ResNetReduction

SIGNAL_EDGE = 3  # 3<-0
SIGNAL_OP = OP_NAMES.index("nor_conv_3x3")
SKIP = OP_NAMES.index("skip_connect")


def planted_supernet() -> NB201Supernet:
    torch.manual_seed(0)
    net = NB201Supernet(
        space=NB201Space(),
        channels=4,
        cells_per_stage=1,
        num_classes=2,
        cell_bn=BatchNormSettings(affine=True, track_running_stats=True),
    )
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, ReLUConvBN):
                module.op[2].weight.zero_()
                module.op[2].bias.zero_()
        stem_conv = net.stem[0].weight
        stem_conv.zero_()
        stem_conv[0, 0, 1, 1] = 1.0
        stem_conv[1, 1, 1, 1] = 1.0
        first_cell = next(block for block in net.cells if isinstance(block, SearchCell))
        signal = first_cell.edges[SIGNAL_EDGE].ops[SIGNAL_OP].op
        signal[1].weight.zero_()
        signal[1].weight[2, 0, 1, 1] = 1.0
        signal[1].weight[3, 1, 1, 1] = 1.0
        signal[2].weight.fill_(1.0)
        for block in net.cells:
            if isinstance(block, ResNetReduction):
                shortcut = block.downsample[1].weight
                shortcut.zero_()
                for c in range(shortcut.shape[1]):
                    shortcut[c, c, 0, 0] = 1.0
        net.classifier.weight.zero_()
        net.classifier.bias.zero_()
        net.classifier.weight[0, 2], net.classifier.weight[0, 3] = 5.0, -5.0
        net.classifier.weight[1, 2], net.classifier.weight[1, 3] = -5.0, 5.0
        net.alphas.zero_()
        net.alphas[:, SKIP] = 2.0
    return net


def planted_images(count: int = 64, size: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    labels = torch.arange(count) % 2
    images = torch.zeros(count, 3, size, size, dtype=torch.uint8)
    images[labels == 0, 0] = 255
    images[labels == 1, 1] = 255
    return images, labels.long()


def planted_data(batch_size: int = 16) -> SearchData:
    images, labels = planted_images()

    def batches(stream: int) -> Batches:
        return Batches(images, labels, batch_size, seed=stream, augment=False)

    return SearchData(
        weight_batches=batches(1),
        alpha_batches=batches(2),
        weight_eval=batches(3),
        alpha_eval=batches(4),
        fingerprint="planted",
        num_classes=2,
    )
