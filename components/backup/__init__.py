"""Backups: restic to Backblaze B2 (or any restic repository); the stack installs scripts/vh_backup.py and its
systemd units on the host (component) from the `backup` section (config)."""
