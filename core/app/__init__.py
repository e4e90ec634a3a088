"""The application: CLI, daemon, engines, HTTP endpoints, demo."""
