"""The faces over one library API: the Python API (``api``), the command line (``cli`` and
``commands/``), the service and its page (``service``, ``web/``)."""
