"""ONNX Runtime sessions, the model registry and the analysis pipelines (no Qt)."""
