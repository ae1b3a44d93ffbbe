"""The safety guard: judges user turns and answers against the Llama Guard 3 hazard taxonomy.

`factory.build_guard` builds the configured backend; `refusal.refusal_message` words what the user sees.
Kept light: importing this package loads no model and no torch.
"""
