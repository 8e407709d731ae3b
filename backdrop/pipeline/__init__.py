"""One batch run, Prefect-free: inputs, preflight, plan, steps, polling, the row lifecycle, reconcile, webhooks."""
