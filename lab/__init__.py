"""The offline wing: the team's tooling around the service, imported by nothing the service runs.

- `lab.alignment`: alignment data building, sweeps and the evaluation of an adapter against its base.
- `lab.guard`: the safety guard's training data, training and evaluation.
- `lab.agent`: the agent's evaluation over a knowledge base.
- `lab.judge`: the refusal judge every evaluation shares.
"""
