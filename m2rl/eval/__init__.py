"""Evaluation: benchmark registry, scoring through m2rl.rewards, metrics."""
