"""Deployments served without a work pool (`serve.py`); `prefect.yaml` declares the same ones for a worker."""
