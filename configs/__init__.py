"""Settings schema (configs.settings), YAML profiles, and the command-line convention (configs.cli)."""
