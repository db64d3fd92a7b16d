"""Why the demo's ViT did not learn object shape, and which objective teaches it (README.md)."""
