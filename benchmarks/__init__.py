"""reclnet.benchmarks: latency and throughput, always against a baseline in the same run."""
