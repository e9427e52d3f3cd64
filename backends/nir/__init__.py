"""NIR target: the integer SNN as a Neuromorphic Intermediate Representation graph (docs/interop.md)."""
