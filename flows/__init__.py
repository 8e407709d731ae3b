"""The Prefect flows: the batch (`change_backgrounds`, its rows run by `picture`) and the cost report."""
