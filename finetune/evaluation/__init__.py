"""Evaluation of an aligned adapter against its base: preference metrics, refusal rates, reports.

`python -m finetune.evaluate` is the entry point; the modules here each do one part of it.
"""
