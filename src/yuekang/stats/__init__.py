"""Figures for the staff console (counts per day, per checkpoint, per state) and the audit log."""
