"""Configuration: checks of a validated config (``checks``), config -> settings objects, the one home of every
default (``params``), the demo plate set-up (``demo``) and code versions for rerun triggers (``provenance``).

Sub-packages import nothing here: a module is imported by its full name (``plateseg.config.params``), so a
rule's code hash covers exactly the modules it runs (see :mod:`plateseg.config.provenance`).
"""
