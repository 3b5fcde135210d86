"""Files in and out: atomic writes and tables (``files``), OME-Zarr stores (``ngff``), the manifest of an imaging
run (``manifest``), raw TIFFs -> OME-Zarr (``ingest``), annotated folders (``annotated``) and synthetic data
(``synth``). No torch."""
