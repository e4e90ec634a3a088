"""`python -m leadbridge.core` runs the CLI (used by tests that need a real subprocess)."""

from leadbridge.core.app.cli import main

if __name__ == "__main__":  # a spawned worker imports this module: it must not run the CLI
    main()
