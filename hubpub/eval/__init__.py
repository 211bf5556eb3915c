"""Evaluation with the official preprocessing."""
