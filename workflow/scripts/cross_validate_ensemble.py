"""Snakemake script (rule cross_validate_ensemble): every method on the annotated images, each image scored by
models (engines and picker) that did not train on it (plateseg.pipeline.compare)."""
from plateseg.io.files import setup_logging
from plateseg.pipeline.compare import cross_validate_ensemble

setup_logging(snakemake.log[0])
p, i, o = snakemake.params, snakemake.input, snakemake.output
cross_validate_ensemble(i.candidates, i.labels, p.annotations, o.summary, o.candidates, picker=p.picker,
                        classical=p.classical, min_iou=p.min_iou, nms_iou=p.nms_iou)
