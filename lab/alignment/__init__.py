"""Alignment of the generator, offline: build point-wise data, sweep recipes, evaluate an adapter against its base.

Entry points: `python -m lab.alignment.data`, `python -m lab.alignment.sweep`, `python -m lab.alignment.evaluate`.
"""
