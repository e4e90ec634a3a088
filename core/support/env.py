"""The environment variable that names the configuration file, in a module light enough for
the CLI to read at start (settings.py, which reads the file, is loaded only when needed)."""

CONFIG_ENV = "LEADBRIDGE_CONFIG"
