"""The synthetic Human3.6M sample: data in the real format and random-weight checkpoints in the released form."""
