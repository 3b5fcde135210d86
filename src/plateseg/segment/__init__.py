"""Instances from images or maps without a network: the classical baseline (``classical``) and
marker-controlled watershed of U-Net maps (``watershed``)."""
