"""`python -m leadbridge.core` runs the CLI (used by tests that need a real subprocess)."""

from leadbridge.core.app.cli import main

main()
