"""Deployments: policies, routing, A/B statistics and verdicts (issue #16)."""
