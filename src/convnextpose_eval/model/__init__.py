"""The LightningModule that runs an engine over the test set: flip test, back-projection to camera space."""
