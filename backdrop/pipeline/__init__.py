"""One batch run, Prefect-free: inputs, sources and preflight, plan, budget, steps, polling, the row lifecycle and
its outcomes, reconcile (history, candidates, evidence), webhooks (webhook_signing)."""
