"""Benchmarks for lexey-mcp (not tests: nothing here asserts a time). Run each with `python -m benchmarks.NAME`."""
