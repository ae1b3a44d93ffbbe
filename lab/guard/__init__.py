"""The safety guard's workbench: training data, training of the classifier heads, evaluation of every backend.

Entry points: `python -m lab.guard.train`, `python -m lab.guard.evaluate`, `python -m lab.guard.generate_answers`.
What the service loads at run time stays in `agents.safety`.
"""
