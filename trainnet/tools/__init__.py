"""Everyday tools over nets, plans and run logs: pictures of a net (draw) and of a run (plot)."""
