"""Tiles of a field: the grid, tile ownership and the one tile scheduler (``grid``), blended per-pixel maps
(``blend``) and instances predicted tile by tile (``instances``). No torch."""
