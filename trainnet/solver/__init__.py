"""Training: the solver loop, update rules, learning-rate policies and snapshots."""
