"""The FastAPI service in front of the agent. Light on import: `python -m api --help` loads no model."""
