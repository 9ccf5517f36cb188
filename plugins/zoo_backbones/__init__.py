"""Built-in backbones: timm CNNs, DOLG-EfficientNet, Hybrid EfficientNet-Swin, OpenCLIP ViT towers."""
