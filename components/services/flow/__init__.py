"""Flow: n8n (main), its task runner and PostgreSQL; the owner account is set from the stack at each start."""
