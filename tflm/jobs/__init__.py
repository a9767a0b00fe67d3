"""End-to-end jobs behind the CLI commands (features, probe, reproduce, analyze)."""
