"""Cross-cutting support: logs, metrics, fault points, the replica's name."""
