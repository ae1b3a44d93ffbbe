"""ULMA alignment of the generator with QLoRA, and the model loader shared with serving."""
