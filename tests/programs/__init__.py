"""Small programs the restore tests checkpoint and restore (built on demand)."""
