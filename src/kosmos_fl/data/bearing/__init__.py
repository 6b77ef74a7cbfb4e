"""Bearing data (FEMTO / PRONOSTIA): raw reader, features, spectra, health inputs, the processed
cache and the generator of synthetic recordings."""
