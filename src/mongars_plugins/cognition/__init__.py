"""Bundled cognition plugins: reasoning, curiosity (gap detection) and personality."""
