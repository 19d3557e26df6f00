"""pytest fixtures for the local Hub server (owned by the localhub work)."""
