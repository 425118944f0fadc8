"""Live operations: the collector (scripts/vh_collect.py) on the host, its thresholds and alerts (config)."""
