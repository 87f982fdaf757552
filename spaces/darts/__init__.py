"""The DARTS CNN space (Liu et al., ICLR 2019) and RobustDARTS's S1-S4.

``ops``: the eight ops (and S4's noise); ``genotype``: ``Genotype`` printing, parsing and
per-edge choices; ``search``: the search supernet and the discrete network of one cell
pair; ``networks``: the evaluation network a genotype is retrained as; ``space``: the
:class:`~spaces.base.SearchSpace` with the two-inputs-per-node rule, registered as
``darts`` and ``darts-s1`` .. ``darts-s4``; ``diagram``: its cell diagrams.
"""
