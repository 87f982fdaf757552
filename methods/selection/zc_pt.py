"""zc-pt (Zero-Cost-PT, Xiang et al., AAAI 2023): DARTS-PT's op removal scored by a zero-cost proxy.

Reference: visionbasicagent/zerocost_operation_score (``nasbench201/init_projection.py``,
``nasbench201/networks_proposal.py``, ``sota/cnn/init_projection.py``,
``sota/cnn/networks_proposal.py``, ``zerocostnas/post_validate.py`` and the
``exp_scripts/zerocostpt_*_pipeline.sh`` defaults). Point by point:

* Perturbation, as the reference: for each candidate op k of the edge being decided,
  ``W[e, k] = 0`` with the other weights left as they are (no renormalisation); undecided
  rows are the supernet's softmax, decided rows one-hot. Every candidate is scored by the
  proxy (:mod:`methods.selection.zero_cost`) on the step's batch; the op whose removal
  leaves the proxy *lowest* is kept (``np.nanargmin``; ties to the earlier op). Recorded
  ``scores[e, k] = -P(W with W[e, k] = 0)`` (higher = keep); a singular NASWOT kernel
  (``-inf``, e.g. identical images in the batch) wins as in the reference but is recorded
  as NaN, since recorded scores are finite. No fine-tuning, no training:
  the reference runs it on an untrained supernet; here it runs on whatever supernet it is
  given (trained checkpoints or untrained ones alike).
* ``proxy``: ``nwot`` (default; the scripts' ``metric=jacob``, i.e. NASWOT) or
  ``jacob_cov``. The reference's NB201 driver sends every other ``--proj_crit`` to
  ``tenas_project``, which scores nothing but ``tenas``, and its ``pt_project`` branch for
  zero-cost-nas measures reads an undefined ``train_queue``; so only NASWOT ever ran. Here
  ``jacob_cov`` masks ops as ``nwot`` does (that dead branch would have set the edge's
  other ops to ``1/num_ops``). TE-NAS and the other zero-cost-nas proxies are not offered.
* Batches: one batch per decision step of ``batch_size`` images (NB201 script:
  ``--batch_size 256``; the DARTS script leaves ``networks_proposal.py``'s default 64),
  capped at the split's size; split ``train`` (the reference's ``train_queue``, the half
  the weights train on). ``batches=reshuffled`` (default) reads a fresh shuffle and
  augmentation for every step, as the reference's ``next(iter(train_queue))`` (NB201) and
  ``enumerate(train_queue)`` (DARTS, one batch for a step's normal and reduction
  decisions) do; ``fixed`` reads the first unaugmented batch every time. Proxy passes run
  under a fixed torch seed (the noise op of S4 draws the same noise for every candidate).
* BatchNorm: ``bn_mode=eval`` (``Jocab_Score`` calls ``model.eval()``; on the reference's
  untrained supernet that means running statistics 0 and 1).
* ``none`` competes in the op phase (both reference codes loop over every op); removing it
  changes nothing, so it is kept only when removing every other op raises the proxy.
* ``edge_order`` (``--edge_decision``; paper names, code names in brackets): ``random``
  (default; a uniformly random undecided edge per step), ``fixed`` (``order``: the lowest
  edge index first, input to output), ``reverse`` (the highest first), ``global-op-iter``
  (``global_op_greedy``: all undecided edges x ops scored on one batch, the (edge, op) of
  lowest proxy decided), ``global-edge-iter`` (``global_edge_greedy``: the edge of lowest
  mean proxy over its ops, its op then decided on a fresh batch), ``global-op-once`` /
  ``global-edge-once`` (edges ranked once, by their lowest / mean proxy, lowest first, then
  decided in that order on fresh batches). Where the harness departs: the reference's
  ``*_once`` code never sorts its ranking (``OrderedDict.popitem`` pops the last edge), so it
  ran them in reverse index order; here they rank as the paper's description says. Its DARTS
  code runs only ``random``, ``reverse`` and ``order`` (``global_op_greedy`` calls
  ``project_global_op`` without its ``infer`` argument; the other names fall back to
  ``order``); here every order runs in every space, per edge group (normal, reduction).
* Topology (DARTS spaces, the reference's ``project_edge``): after all ops are decided,
  one node per cell a step (one batch per step), in random node order -- the reference's
  node order for every ``edge_decision`` but ``reverse``, where the last node goes first --
  each remaining input edge is zeroed in turn and the edge whose zeroing leaves the proxy
  *highest* is dropped (the later of equals), until two remain; the matrix is not updated
  between those rounds, as there. A kept edge decided to ``none`` takes its first other
  candidate (:func:`~methods.selection.topology.kept_op`, the reference's genotype rule).
* Pool and validation (``pool_size`` N = 10, ``validate_rounds`` V = 100, the scripts'
  defaults): the projection runs N times (fresh edge orders and batches; the reference
  also redraws its NB201 alphas, which would discard a trained supernet's, so here they
  stay). Every distinct cell then gets the proxy summed over V batches on its discrete
  network, built at the supernet's size with freshly initialised weights
  (``validation_weights=fresh``, PyTorch's default initialisation, seeded per cell; the
  reference builds untrained benchmark-size networks, which its supernet also is) or the
  supernet's (``supernet``); the highest total wins (``np.nanargmax``). Here every cell
  reads the same V batches (there each cell reads its own shuffle of the same V x B
  images), and a pool of one distinct cell is not validated (the choice is already made).
* Cost: one forward pass per proxy evaluation (``jacob_cov``: and one backward), on the
  supernet or on a discrete network; nothing is trained.
* DARTS spaces record, beside the topology, the pool's cells, their validation totals and
  which was chosen (``Selection.topology``); NB201 selections have no such field.
"""

from __future__ import annotations

import math
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch

from harness.errors import HarnessError
from methods.selection.base import (
    SelectionContext,
    SelectionCost,
    SelectionMethod,
    fixed_weights,
    working_copy,
)
from methods.selection.progressive import (
    RESHUFFLED_EPOCHS,
    candidate_mask,
    drop_edge,
    remove_op,
    require_one_of,
)
from methods.selection.topology import pruned_cell
from methods.selection.zero_cost import PROXIES, UNIT_RULES, proxy_score, scoring_network
from spaces.base import Supernet, Topology

EDGE_ORDERS = (
    "random",
    "fixed",
    "reverse",
    "global-op-iter",
    "global-op-once",
    "global-edge-iter",
    "global-edge-once",
)
# Reference batch sizes: zerocostpt_nb201_pipeline.sh passes 256; the DARTS pipeline keeps
# sota/cnn/networks_proposal.py's default of 64 (its post_validate step also runs 64).
REFERENCE_BATCH = {Topology.EVERY_EDGE: 256, Topology.TWO_INPUTS_PER_NODE: 64}
VALIDATION_EPOCHS = 2 * RESHUFFLED_EPOCHS  # apart from the scoring steps' epochs


@dataclass(frozen=True)
class ZcPtOptions:
    proxy: str = "nwot"  # nwot (the scripts' metric=jacob) | jacob_cov
    edge_order: str = "random"  # one of EDGE_ORDERS (the scripts' edge_decision=random)
    pool_size: int = 10  # N, projection runs (the scripts' pool_size=10)
    validate_rounds: int = 100  # V, batches per pooled cell (the scripts' validate_rounds=100)
    batch_size: int | None = None  # None: the reference's per space (NB201 256, DARTS 64)
    split: str = "train"  # train (the reference's train_queue) | valid
    batches: str = "reshuffled"  # a fresh shuffle per step, as the reference | fixed
    bn_mode: str = "eval"  # Jocab_Score's model.eval()
    units: str = "reference"  # nwot's hooked modules: reference | relu (see zero_cost)
    none_competes: bool = True  # both reference codes score every op, none included
    validation_weights: str = "fresh"  # fresh (the reference's untrained networks) | supernet

    def __post_init__(self) -> None:
        require_one_of("zc-pt", "proxy", self.proxy, PROXIES)
        require_one_of("zc-pt", "edge_order", self.edge_order, EDGE_ORDERS)
        require_one_of("zc-pt", "split", self.split, ("train", "valid"))
        require_one_of("zc-pt", "batches", self.batches, ("reshuffled", "fixed"))
        require_one_of("zc-pt", "bn_mode", self.bn_mode, ("eval", "train"))
        require_one_of("zc-pt", "units", self.units, UNIT_RULES)
        require_one_of("zc-pt", "validation_weights", self.validation_weights,
                       ("fresh", "supernet"))  # fmt: skip
        for name, least in (("pool_size", 1), ("validate_rounds", 1), ("batch_size", 2)):
            value = getattr(self, name)
            if name == "batch_size" and value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise HarnessError(f"option {name} of zc-pt must be a whole number >= {least}")


@dataclass
class _Run:
    """One projection of the pool: the cell, what each decision saw, and the topology."""

    choices: list[int]
    scores: np.ndarray
    sequence: list[int]
    topology: dict = field(default_factory=dict)


def _seed(*parts: int) -> int:
    return int(np.random.SeedSequence(list(parts)).generate_state(1)[0])


def _chunks(batches, first_epoch: int, size: int, count: int):
    """``count`` batches of ``size`` images, read in order from epoch ``first_epoch`` on."""
    pending: list[torch.Tensor] = []
    made, epoch = 0, first_epoch
    while True:
        for x, _ in batches.epoch(epoch):
            pending.append(x)
            while made < count and sum(len(p) for p in pending) >= size:
                joined = torch.cat(pending)
                yield joined[:size]
                pending, made = [joined[size:]], made + 1
            if made == count:
                return
        epoch += 1


class _Proxy:
    """The proxy on the supernet and on discrete networks; every pass is charged to ``cost``."""

    def __init__(self, net: Supernet, options: ZcPtOptions, context: SelectionContext,
                 cost: SelectionCost) -> None:  # fmt: skip
        o = self.options = options
        data = context.data
        train = o.split == "train"
        if o.batches == "fixed":
            self.stream = data.weight_eval if train else data.alpha_eval
        else:
            self.stream = data.weight_batches if train else data.alpha_batches
        wanted = o.batch_size or REFERENCE_BATCH.get(net.space.topology, 256)
        self.size = min(wanted, len(self.stream.images))
        self.cost, self.steps = cost, 0
        # the torch seed of every proxy pass (S4's noise op draws; nothing else here does)
        self.torch_seed = _seed(context.seed, 27)
        names = net.space.op_names
        excluded = () if o.none_competes or "none" not in names else (names.index("none"),)
        self.allowed = candidate_mask(net, excluded)

    def next_batch(self) -> torch.Tensor:
        epoch = 0 if self.options.batches == "fixed" else RESHUFFLED_EPOCHS + self.steps
        self.steps += 1
        return next(_chunks(self.stream, epoch, self.size, 1))

    def validation_batches(self):
        first = 0 if self.options.batches == "fixed" else VALIDATION_EPOCHS
        return _chunks(self.stream, first, self.size, self.options.validate_rounds)

    def score(self, net, images: torch.Tensor, weights: torch.Tensor | None = None) -> float:
        o = self.options
        devices = [images.device] if images.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(self.torch_seed)
            value = proxy_score(o.proxy, net, images, weights, o.units, o.bn_mode)
        self.cost.forward_passes += 1
        self.cost.backward_passes += o.proxy == "jacob_cov"
        return value

    def rows(self, net: Supernet, weights: torch.Tensor, edges: list[int], images):
        """Edges -> rows of ``-P(W with W[e, k] = 0)`` (NaN where k is no candidate)."""
        rows = {e: np.full(net.space.num_ops, np.nan) for e in edges}
        for e in edges:
            for k in np.flatnonzero(self.allowed[e]):
                rows[e][k] = -self.score(net, images, remove_op(weights, e, int(k)))
        return rows


def _rank(value: float) -> float:
    """A value to rank by: NaN (an undefined proxy) ranks last."""
    return -math.inf if math.isnan(value) else float(value)


@contextmanager
def _quiet():
    """No "All-NaN slice" warning: an edge whose proxy is undefined simply ranks last."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        yield


def _decision(net: Supernet, edge: int, row: np.ndarray, proxy: str) -> int:
    if np.isnan(row).all():
        raise HarnessError(
            f"zc-pt: the {proxy} proxy is undefined (NaN) for every candidate op of edge "
            f"{net.space.edge_names[edge]}, so no op can be chosen there"
        )
    return int(np.nanargmax(row))  # first maximum: ties go to the earlier op


def _project(net: Supernet, proxy: _Proxy, rng: np.random.Generator) -> _Run:
    """One projection: every edge's op, then (DARTS) every node's two inputs."""
    space = net.space
    base = net.mixing_weights().detach()
    decided: dict[int, int] = {}
    scores, sequence = space.empty_scores(), []
    ranked: dict[int, list[int]] = {}  # the *-once orders, per edge group
    while len(decided) < space.num_edges:
        images = proxy.next_batch()  # one per step, shared by the step's edge groups
        for g, group in enumerate(space.edge_groups):
            undecided = [e for e in group if e not in decided]
            if not undecided:
                continue
            weights = fixed_weights(base, decided)
            edge, row = _next_edge(net, proxy, rng, weights, undecided, images, ranked, g)
            decided[edge] = _decision(net, edge, row, proxy.options.proxy)
            # A singular kernel (nwot = -inf, e.g. two identical images) is the reference's
            # minimum and decides as such, but scores are recorded finite: NaN there.
            scores[edge] = np.where(np.isinf(row), np.nan, row)
            sequence.append(edge)
    run = _Run([decided[e] for e in range(space.num_edges)], scores, sequence)
    if space.prunes_inputs:
        run.choices, run.topology = _prune(net, proxy, rng, base, decided)
    return run


def _next_edge(net, proxy: _Proxy, rng, weights, undecided: list[int], images, ranked, group):
    """The edge the order decides next, and the row of scores its decision reads."""
    order = proxy.options.edge_order
    if order in ("random", "fixed", "reverse"):
        if order == "random":
            edge = int(rng.choice(undecided))
        else:
            edge = undecided[0] if order == "fixed" else undecided[-1]
        return edge, proxy.rows(net, weights, [edge], images)[edge]
    rank = np.nanmax if order.startswith("global-op") else np.nanmean
    if order.endswith("-iter"):
        rows = proxy.rows(net, weights, undecided, images)
        with _quiet():
            edge = max(undecided, key=lambda e: _rank(rank(rows[e])))  # the first of equals
        if order == "global-op-iter":
            return edge, rows[edge]
        # global-edge-iter: the reference's project() then reads a fresh batch
        return edge, proxy.rows(net, weights, [edge], proxy.next_batch())[edge]
    if group not in ranked:  # *-once: ranked on this batch, decided on fresh ones
        rows = proxy.rows(net, weights, undecided, images)
        with _quiet():
            keys = {e: _rank(rank(rows[e])) for e in undecided}
        ranked[group] = sorted(undecided, key=lambda e: -keys[e])  # stable: index order ties
        images = proxy.next_batch()
    edge = next(e for e in ranked[group] if e in undecided)
    return edge, proxy.rows(net, weights, [edge], images)[edge]


def _prune(net: Supernet, proxy: _Proxy, rng: np.random.Generator, base: torch.Tensor,
           decided: dict[int, int]) -> tuple[list[int], dict]:  # fmt: skip
    """The reference's ``project_edge``: each node keeps the two inputs it needs most."""
    space = net.space
    none = space.op_names.index("none")
    queues = [[list(inputs) for inputs in nodes if len(inputs) > 2] for nodes in space.node_inputs]
    importance = np.full(space.num_edges, np.nan)
    dropped: list[int] = []
    node_order: list[list[int]] = []
    while any(queues):
        images = proxy.next_batch()  # one per step, shared by the normal and reduction node
        for queue in queues:
            if not queue:
                continue
            reverse = proxy.options.edge_order == "reverse"
            inputs = queue.pop(len(queue) - 1 if reverse else int(rng.integers(len(queue))))
            weights = fixed_weights(base, {**decided, **{e: none for e in dropped}})
            kept = list(inputs)
            while len(kept) > 2:
                values = {e: proxy.score(net, images, drop_edge(weights, e)) for e in kept}
                for e, value in values.items():
                    if np.isnan(importance[e]):  # the first round's, before any drop
                        importance[e] = -value
                # highest proxy without it: least needed (NaN first); the later of equals
                ranks = [math.inf if math.isnan(values[e]) else values[e] for e in kept]
                drop = [e for e, r in zip(kept, ranks, strict=True) if r == max(ranks)][-1]
                kept.remove(drop)
                dropped.append(drop)
            node_order.append(list(inputs))
    return pruned_cell(space, decided, dropped, importance, node_order)


def _validate(net: Supernet, cells: list[tuple[int, ...]], proxy: _Proxy, seed: int):
    """The proxy summed over the validation batches, per cell, on its discrete network."""
    o, device = proxy.options, net.alphas.device
    totals = []
    for index, cell in enumerate(cells):
        # building and initialising draw from the global generator: keep the caller's stream
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(_seed(seed, index))
            network = net.space.discrete_from_supernet(net, list(cell)).to(device)
            if o.validation_weights == "fresh":  # PyTorch's default initialisation
                for module in network.modules():
                    if hasattr(module, "reset_parameters"):
                        module.reset_parameters()
        network.train(o.bn_mode == "train")  # once, not on every pass
        totals.append(sum(proxy.score(network, x) for x in proxy.validation_batches()))
    return totals


class ZcPt(SelectionMethod):
    """Zero-Cost-PT: see the module docstring for what follows the reference and what not."""

    name = "zc-pt"
    options_class = ZcPtOptions
    topology_rule = (
        "Zero-Cost-PT topology projection: op phase first (none competes), then per node "
        "(random order, reverse: last node first; one normal and one reduction node a step, "
        "no fine-tuning) the input edge whose zeroing leaves the proxy highest is dropped "
        "until two remain"
    )
    aliases = {
        **{order: {"edge_order": order} for order in EDGE_ORDERS if order != "random"},
        "jacob-cov": {"proxy": "jacob_cov"},
    }

    def choose(self, supernet: Supernet, context: SelectionContext, cost: SelectionCost):
        o = self.options
        net = scoring_network(supernet)  # a copy already where cells had to be unfused
        net = working_copy(supernet) if net is supernet else net
        net.train(o.bn_mode == "train")  # once, not on every pass
        proxy = _Proxy(net, o, context, cost)
        runs = [
            _project(net, proxy, np.random.default_rng([context.seed, i]))
            for i in range(o.pool_size)
        ]
        cells = list(dict.fromkeys(tuple(run.choices) for run in runs))  # first seen first
        totals = _validate(net, cells, proxy, context.seed) if len(cells) > 1 else [math.nan]
        if len(cells) > 1 and np.isnan(totals).all():
            raise HarnessError(f"zc-pt: the {o.proxy} proxy is undefined for every pooled cell")
        best = 0 if len(cells) == 1 else int(np.nanargmax(totals))  # the first of equals
        chosen = next(run for run in runs if tuple(run.choices) == cells[best])
        record = {
            **chosen.topology,
            "pool": [net.space.encode(cell) for cell in cells],
            "validation": [None if math.isnan(t) else float(t) for t in totals],
            "chosen": best,
        }
        return chosen.choices, chosen.scores, chosen.sequence, record
