"""Other toolkits at the edges: importers of SpeechBrain and WeSpeaker models into audiocl model
files (``importers``), ONNX export (``export``) and the onnxruntime backend (``onnx_runtime``)."""
