"""Small helpers of the workflow SDK (Prefect's `prefect.utilities`)."""
