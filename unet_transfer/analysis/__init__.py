"""Why a fine-tuning strategy wins, block by block: how far each block's weights moved
(change.py), how similar its features stayed (cka.py), where the gradient went, and what single
units respond to (activation.py, the paper's Fig. 5). The per-run measures (measures/: weight
change and CKA, gradient flow) register themselves in registry.py: every run records them in
metrics.json and the report shows them."""
