"""EfficientFormerV2 for mobile vision: model zoo, checkpoints, fast inference."""
