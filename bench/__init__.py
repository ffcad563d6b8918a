"""`make bench`: performance and cost of the relay, each figure beside a baseline measured in the same run.

Benchmarks print and write a results file; nothing here asserts on a timing.
"""
