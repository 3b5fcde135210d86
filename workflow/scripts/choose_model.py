"""Snakemake script (rule choose_model): the fine-tuned model of an engine, or the one it started from where
cross-validation on the annotated images says fine-tuning made it worse."""
from plateseg.io.files import setup_logging
from plateseg.pipeline.validation import choose_finetuned

setup_logging(snakemake.log[0])
i, o, p = snakemake.input, snakemake.output, snakemake.params
choose_finetuned(snakemake.wildcards.engine, i.folds_models, i.tuned, i.initial, p.annotations, o.model, o.table,
                 rescale=p.rescale, pixel_size=p.pixel_size, threads=snakemake.threads)
