"""Reports computed from the store: the funnel and its HTML page."""
