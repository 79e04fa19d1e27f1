"""Performance model of placed designs (perf/model.py): interval, latency, throughput, bottleneck."""
