"""The per-run analysis measures, one module each, registered with `@measure`
(unet_transfer/analysis/registry.py): every run records their summaries in metrics.json and the
report shows them. Torch, Lightning and the networks are imported inside the hooks: the report
reads the registry without them."""
