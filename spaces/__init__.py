"""Search spaces: primitive ops, cells, supernets, discrete networks and codecs."""
