"""The compose stack run for real (tests/e2e/test_stack.py)."""
