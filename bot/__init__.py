"""provbot service: CLI, settings, local Hub server, index, scheduler, reporting."""
