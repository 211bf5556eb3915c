"""A stand-in for the few torchvision names timm imports at module level (see ../README.md).
Test-only; put on PYTHONPATH by tests/test_timm_reference.py, never installed."""

__version__ = "0.0+hubpub-test-shim"
