"""Service levels from use cases: calendars, verdicts, deadlines, predictions, budgets."""
