"""Reporting: metrics (pass@k, bootstrap intervals), rich tables and plots over run results."""
