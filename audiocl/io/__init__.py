"""Audio in: decoding (soundfile, PyAV), resampling and validation (``audio``), path lists, and the
speech gate that refuses recordings without speech (``vad``)."""
