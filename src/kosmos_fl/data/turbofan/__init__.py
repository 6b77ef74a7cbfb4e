"""Turbofan data (NASA C-MAPSS): the file reader and windows, PostgreSQL tables, the 2021 layouts."""
