"""Data: reading image folders, splits, transforms, samplers, the DataModule and resizing."""
