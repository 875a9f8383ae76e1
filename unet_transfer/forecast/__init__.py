"""A forecast of a study's answer ("which blocks to fine-tune?") at a small share of its compute,
checked against the study when its results exist.

    unet-transfer forecast EXPERIMENT [overrides]      (make forecast EXP=demo)

Modules: `candidates` (the configurations a study compares), `estimator` (the interface every
estimator follows and the registry), one module per estimator (`gradient`, `shift`, `racing`),
`ranking` (per-block scores -> a ranking of configurations; the baselines), `scoring` (the
study's table; Kendall's tau, direction, k, regret, cost share), `write` (forecast.json,
forecast.md, forecast.png) and `command`. A new estimator is one module listed in
`estimator.ESTIMATORS`.

The forecast writes into `multirun/<study>/forecast/` and never a file named metrics.json: the
report, resume and recommend look for runs by that file, so they never take it for a run.
"""
