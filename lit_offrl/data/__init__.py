"""Data: Minari datasets as flat tensors, the offline data module, and dataset recipes."""
