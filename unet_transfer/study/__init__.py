"""Studies: the sweeps of an experiment and their report, pretraining on demand, sweep progress
and GPU slots for runs at once."""
