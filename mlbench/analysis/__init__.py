"""The analysis stage: statistics, the one decision rule, run comparison, the gate's verdicts,
device ceilings and the datasheet, hardware kinds, energy."""
