"""The scheduler: jobs on cron ticks and sensors, one active daemon per state store, deadline-aware order."""
