"""Real adapters for the ports. Each later issue adds its own (docker, kube, postgres, s3, prometheus)."""
