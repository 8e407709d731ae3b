"""Thin Prefect tasks, one per API step: each takes the run's resources and calls one library function."""
