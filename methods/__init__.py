"""The algorithms being compared: selection methods and supernet training algorithms."""
