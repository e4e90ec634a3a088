"""The daemon's HTTP server: health, readiness, metrics, the marketplace webhook."""
