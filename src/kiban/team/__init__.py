"""The team that runs the platform: on-call rotation, postmortems, the weekly operations review."""
