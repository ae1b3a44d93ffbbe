"""Evaluation of the chat agent over a knowledge base: `python -m lab.agent.evaluate`."""
