"""Ingest: land raw leads, then process them into leads."""
