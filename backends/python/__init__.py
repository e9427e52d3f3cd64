"""Python target: the saved integer IR (target interface: target.py)."""
