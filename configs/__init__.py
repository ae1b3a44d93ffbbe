"""Settings schema and YAML profiles."""

from configs.settings import AppSettings, ConfigError, load_settings

__all__ = ["AppSettings", "ConfigError", "load_settings"]
