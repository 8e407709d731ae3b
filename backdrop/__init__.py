"""Backdrop: bulk background changes for product photos on Perfect Corp's API, with Prefect."""

__version__ = "0.1.0"
