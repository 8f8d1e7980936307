"""PyTorch reference of the Emu2 architecture, the ONNX exporter of emu2 model packages, and the goldens."""
