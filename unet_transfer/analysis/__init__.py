"""Why a fine-tuning strategy wins, block by block: how far each block's weights moved
(change.py), how similar its features stayed (cka.py), where the gradient went (gradients.py),
and what single units respond to (activation.py, the paper's Fig. 5). runs.py gathers the
first three for every run."""
