"""The demo: a revocation propagating to several services, with measured latency."""
