"""Tiles of a field: the grid, tile ownership, the one tile scheduler and the one loop that runs every tiled or
blockwise step's windows, ``threads`` at a time with dask (``grid``), blended per-pixel maps (``blend``) and
instances predicted tile by tile (``instances``). No torch."""
