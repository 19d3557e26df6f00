"""The moderator web console under ``/console`` (docs/console.md): queue, finding, audit log, jobs."""
