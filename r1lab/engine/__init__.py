"""The one place that touches DeepSpeed and torch.distributed (import it only where needed)."""
