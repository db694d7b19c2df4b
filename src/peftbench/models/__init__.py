"""An encoder with its head (load), its family's role table (families), one module per method (methods/,
mirroring configs/method/), and the trainable-parameter table (params, paramcache)."""
