"""Leaf helpers for files and bytes: atomic writes, markers, TOML/JSON merge, S3 streaming, archives."""
