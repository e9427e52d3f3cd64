"""Python reference runtimes: float IR, float SNN simulator, integer SNN."""
