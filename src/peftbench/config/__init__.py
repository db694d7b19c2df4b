"""Configs: compose the Hydra tree with `key=value` overrides (compose), every knob's type and range (schema),
own-data keys checked against each other (crosscheck)."""
