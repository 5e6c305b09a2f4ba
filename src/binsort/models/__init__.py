"""Models: the torchvision factory, checkpoint loading, optimisers and the LightningModule."""
