"""Agent: OpenClaw's gateway (one container, read-only root) with its config file and token as files."""
