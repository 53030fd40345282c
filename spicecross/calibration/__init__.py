"""spicecross.calibration"""
