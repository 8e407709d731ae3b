"""The run's report: one row per input row, the summary, and its markdown."""
