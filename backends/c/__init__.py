"""C backend: emits a C99 integer kernel library for the integer IR (target interface: target.py)."""
