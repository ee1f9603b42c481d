"""PyTorch reference backend (imports torch only when loaded)."""
