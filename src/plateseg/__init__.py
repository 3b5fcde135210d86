"""plateseg: nuclei segmentation for microscopy plates."""
__version__ = "0.1.0"
