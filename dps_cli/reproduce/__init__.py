"""`dps reproduce`: the paper's pipeline as a plan of runs over the `pipeline` functions.

The entry point is `dps_cli.reproduce.stages.reproduce` (options from
`dps_cli.reproduce.runs.ReproduceOptions`, scales from `dps_cli.reproduce.profiles`);
`dps_cli.reproduce.slurm.submit_reproduction` submits the same stages as Slurm jobs. The package
sits above `pipeline` and `report` and below `cli`; nothing below it imports it. Modules are
imported on use, as in `pipeline`, so that the command line can read the profiles and stage names
without loading the sampling engine.
"""
