"""Model files: reading and writing ``.pt`` checkpoints and model files, averages and ensembles
(``checkpoint``), exported ``.onnx`` files (``onnx_file``), and the inference network a file
describes (``network``). Knows nothing of the stages above it."""
