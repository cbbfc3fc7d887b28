"""The pgreco job catalog and runner."""
