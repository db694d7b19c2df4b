"""What leaves a run: export to peft/merged/ONNX folders (export), predict/evaluate on saved runs (serve), many
task deltas on one base (multitask)."""
