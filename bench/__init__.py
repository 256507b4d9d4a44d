"""Benchmarks: they print figures (calls, seconds, MB); they are not tests."""
