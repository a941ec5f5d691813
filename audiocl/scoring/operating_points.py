"""The operating points a calibrated model offers, one list for the CLI, the API and the service.

Free of imports, so building the command line's parser (every ``--help``) stays light.
"""

# operating point name -> key of the model's calibration record (scoring.calibration_from_metrics)
OPERATING_POINTS = {
    "eer": "eer_threshold",
    "min_dcf_0.01": "min_dcf_0.01_threshold",
    "min_dcf_0.05": "min_dcf_0.05_threshold",
}
