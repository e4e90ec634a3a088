"""The domain: leads, people, stages, field maps. Pure functions, no I/O."""
