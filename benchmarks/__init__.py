"""Benchmarks: load generators and engine comparisons. Results live in benchmarks/results/ with their hardware."""
