"""`peftbench <command> [key=value ...]`: parse, compose the config, call one function. Bad input -> one line, exit 2."""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from pathlib import Path

from .errors import Stopped, UserError

TRAIN_HELP = """Fine-tune one model on one task with one method; writes OUT/result.json, train.log, delta.*.

Overrides are Hydra key=value pairs composed over the packaged configs:
  task=cola|sst2|mrpc|qqp|stsb|mnli|qnli|rte|wnli|squad, or your own data: task=classification|qa task.train=FILE ...
  method=full|bitfit|bitfit_subset|lora|prompt|...   model=bert_base|roberta_base|deberta_v3_base|minilm_l6|tiny|...
  (`peftbench list` names every method, task, model and study preset)
  seed=42  data_dir=DIR  train_size=N  epochs=3  lr=X  max_steps=N  schedule=epochs|steps  out=DIR
  precision=auto|fp16|bf16|fp32  device=auto|cpu|cuda  eval_every=N  tracking.mode=online|offline|disabled
Any other key by its full path, e.g. method.r=16 method.position=before_cls model.name_or_path=DIR.
The resolved defaults:
"""


def _train(args: argparse.Namespace) -> int:
    from accelerate import PartialState

    from .api import run_overrides

    run = run_overrides(args.overrides)
    if PartialState().is_main_process:  # under `accelerate launch` the others stay quiet
        print(run.summary())
    return 1 if run.record["status"] == "diverged" else 0  # no model came out of it; its record says where it diverged


def _params(args: argparse.Namespace) -> int:
    from .models.paramcache import cached

    def compute(overrides: list[str]) -> str:
        from .models.params import params_table  # torch, transformers, peft: only on a cache miss

        return params_table(overrides)

    print(cached(args.overrides, compute))
    return 0


def _study(args: argparse.Namespace) -> int:
    from .studies.grid import run_study

    return run_study(args.name, args.overrides, dry_run=args.dry_run)


def _report(args: argparse.Namespace) -> int:
    from .engine.folders import RUN_MARKS, check_run
    from .reports import write_report
    from .studies.quickstart import study_report

    if not args.study:
        if not args.dirs:
            raise UserError("report: name the folders to read (DIR...) or a study (--study NAME)")
        for d in args.dirs:  # a run folder named on its own must be a finished run; a study's folder may hold any
            if any((Path(d) / f).is_file() for f in RUN_MARKS):
                check_run(Path(d), "report", delta=False)
        print(f"wrote {write_report(args.dirs, args.out, overwrite=args.overwrite)}")
        return 0
    if len(args.dirs) > 1:
        raise UserError(f"report --study {args.study}: give at most one DIR (the study's out folder), "
                        f"not {len(args.dirs)}")
    print(f"wrote {study_report(args.study, [f'out={args.dirs[0]}'] if args.dirs else [], args.out, args.overwrite)}")
    return 0


def _quickstart(args: argparse.Namespace) -> int:
    from .studies.quickstart import run_quickstart

    return run_quickstart(args.overrides, dry_run=args.dry_run)


def _list(args: argparse.Namespace) -> int:
    from .studies.quickstart import list_configs

    print(list_configs(args.groups))
    return 0


def _predict(args: argparse.Namespace) -> int:
    import json

    from .artifacts.serve import PREDICT_KEYS, load_for, parse_options, predict, read_inputs

    opts = parse_options(args.overrides, PREDICT_KEYS)
    if len(args.text_pair) not in (0, len(args.text)) or len(args.context) != len(args.question):
        raise UserError("give one --text-pair per --text and one --context per --question, in order")
    run = load_for(args.run_dir, opts)
    inputs = list(zip(args.question, args.context)) + (list(zip(args.text, args.text_pair)) if args.text_pair
                                                       else list(args.text))
    if args.input:
        inputs += read_inputs(args.input, run)
    for x, answer in zip(inputs, predict(run, inputs, opts.get("batch_size") or 64)):
        if args.jsonl:
            print(json.dumps({"input": x, **answer}, ensure_ascii=False))
        else:
            what, score = (answer["answer"], answer["score"]) if "answer" in answer else (answer["label"],
                                                                                          answer["probability"])
            parts = [x] if isinstance(x, str) else list(x)  # the whole input: text and text pair, question and context
            print("\t".join([str(what), f"{score:.4f}", *(" ".join(str(p).split()) for p in parts)]))
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from .artifacts.serve import evaluate_run

    res = evaluate_run(args.run_dir, args.overrides)
    same = "same as recorded" if res["metrics"] == res["recorded"] else f"recorded: {res['recorded']}"
    r = res["run"]
    print(f"{r['task']} {r['method']} {r['model']} on {res['eval_examples']} dev examples: {res['metrics']} ({same})")
    return 0


def _data(args: argparse.Namespace) -> int:
    from .data.fetch import write_data

    return write_data(args.dir, args.overrides)


def _export(args: argparse.Namespace) -> int:
    from .artifacts.export import export_run
    from .artifacts.serve import parse_options

    opts = parse_options(args.overrides, {"model.name_or_path"})
    model = {k.removeprefix("model."): v for k, v in opts.items()}
    out = export_run(args.run_dir, args.format, args.out, args.push_to_hub, model, overwrite=args.overwrite)
    print(f"wrote {out} ({args.format})" + (f", pushed to {args.push_to_hub}" if args.push_to_hub else ""))
    return 0


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("peftbench")
    except PackageNotFoundError:  # run from a source tree that was never installed
        from .version import __version__

        return __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="peftbench", description=(
        "Full fine-tuning vs BitFit, BitFit-subset, LoRA, prompt tuning and more on encoders (BERT, RoBERTa, "
        "DistilBERT, ELECTRA, ALBERT, DeBERTa-v2/v3, ModernBERT): the whole GLUE, SQuAD v1.1 and your own "
        "CSV/JSONL/Parquet/hub data, with costs and reports. `peftbench list` says what is packaged."))
    parser.add_argument("--debug", action="store_true", help="show full tracebacks")
    parser.add_argument("--version", action="version", version=f"peftbench {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, fn, help_text in [
        ("train", _train, "fine-tune one run (key=value overrides)"),
        ("params", _params, "trainable parameters of every method for a model, from its config (no download)"),
    ]:
        p = sub.add_parser(name, help=help_text, description=help_text,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        p.add_argument("overrides", nargs="*", metavar="key=value")
        p.set_defaults(fn=fn)
    p = sub.add_parser("quickstart", help="the whole tool in one command: five methods on an SST-2 slice, then the report",
                       description="Train full, bitfit, bitfit_subset, lora and prompt on 3,000 SST-2 rows (one epoch, "
                       "MiniLM, each at a rate it learns at) and write the report, its figures and explorer.html: the "
                       "study preset configs/study/quickstart.yaml, then `report --study quickstart`. key=value as for "
                       "`study` (out=DIR, data_dir=DIR, model=..., any run key); completed runs are skipped.")
    p.add_argument("overrides", nargs="*", metavar="key=value")
    p.add_argument("--dry-run", action="store_true", help="list the runs and which are left to do; run nothing")
    p.set_defaults(fn=_quickstart)
    p = sub.add_parser("list", help="the methods, tasks, models and study presets, one line each",
                       description="What the packaged configs offer, from each config's own description.")
    p.add_argument("groups", nargs="*", metavar="GROUP", help="methods | tasks | models | studies (default: all)")
    p.set_defaults(fn=_list)
    p = sub.add_parser("study", help="run a grid of runs from configs/study/NAME.yaml; finished runs are skipped",
                       description="Run a study (glue | scaling | FILE.yaml): methods x tasks x sizes x seeds, one "
                       "run after another. Study keys: methods=[..] tasks=[..] seeds=[..] sizes=[..] out=DIR "
                       "lrs=[..] (learning rates, every method; lrs.METHOD=[..] for one); select=holdout "
                       "holdout=0.1 trials=N seeds=auto min_seeds= max_seeds= margin= alpha= final_rows= data_seed(s)= space.METHOD.KEY= "
                       "sampler=random|tpe (docs/protocol.md); any "
                       "other key=value goes to every run. Completed runs with the same config are skipped, so "
                       "running the same command again resumes a killed study. launcher=joblib|ray|ray_cluster|"
                       "submitit_slurm|slurm_gpu|submitit_local sends the runs to a Hydra launcher instead; hydra.* "
                       "key=value settings configure it (e.g. hydra.launcher.n_jobs=4, hydra.launcher.partition=gpu).")
    p.add_argument("name", metavar="NAME")
    p.add_argument("overrides", nargs="*", metavar="key=value")
    p.add_argument("--dry-run", action="store_true", help="list the runs and which are left to do; run nothing")
    p.set_defaults(fn=_study)
    p = sub.add_parser("report", help="tables and figures from result.json files: OUT/report.md + PNGs + explorer.html",
                       description="Read every result.json under DIR... (recursively) and write OUT/report.md "
                       "with the PNG figures next to it, and explorer.html (interactive, self-contained).")
    p.add_argument("dirs", nargs="*", metavar="DIR")
    p.add_argument("--study", metavar="NAME", help="read only the runs the study preset NAME plans, in its out "
                   "folder (or in DIR); for a folder that holds more than one study's runs")
    p.add_argument("--out", default="report", help="output folder (default: report): new, empty or an earlier "
                   "report, whose files are replaced")
    p.add_argument("--overwrite", action="store_true", help="replace OUT even if it holds other files")
    p.set_defaults(fn=_report)
    p = sub.add_parser("predict", help="predictions of a trained run (base + its delta) for new inputs",
                       description="Predict with RUN_DIR's delta on its base. key=value options, right after RUN_DIR: "
                       "merge=true (peft methods) device=cpu batch_size=64 model.name_or_path=DIR (a moved base).")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("overrides", nargs="*", metavar="key=value")
    p.add_argument("--text", action="append", default=[], help="a text to classify (repeatable)")
    p.add_argument("--text-pair", action="append", default=[], help="its second sentence (pair tasks)")
    p.add_argument("--question", action="append", default=[], help="a question (QA runs; with --context)")
    p.add_argument("--context", action="append", default=[], help="the passage to answer it from")
    p.add_argument("--input", metavar="FILE", help="JSONL or TSV (with a header) holding the task's text columns")
    p.add_argument("--jsonl", action="store_true", help="print one JSON object per input")
    p.set_defaults(fn=_predict)
    p = sub.add_parser("evaluate", help="re-score a trained run's delta on its task's dev set",
                       description="Re-score RUN_DIR with its own result.json config. Options: data_dir=DIR "
                       "eval_batch_size=N device=cpu merge=true (peft methods) model.name_or_path=DIR.")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("overrides", nargs="*", metavar="key=value")
    p.set_defaults(fn=_evaluate)
    p = sub.add_parser("data", help="write the whole GLUE (nine tasks) and SQuAD v1.1 from the hub into DIR, the "
                       "layout data_dir expects", description="Fetch GLUE and SQuAD v1.1 through the tasks' own hub "
                       "loaders and write DIR/glue/<Task>/{train,dev}.tsv in GLUE's own layout (CoLA with no header, MNLI's "
                       "dev_matched/dev_mismatched) and DIR/squad/{train,dev}-v1.1.json, then run with data_dir=DIR. "
                       "Options: tasks=[cola,sst2,mrpc,qqp,stsb,mnli,qnli,rte,wnli,squad] (default: all) "
                       "overwrite=true (files already there are kept otherwise).")
    p.add_argument("dir", metavar="DIR")
    p.add_argument("overrides", nargs="*", metavar="key=value")
    p.set_defaults(fn=_data)
    p = sub.add_parser("export", help="write a run as a peft adapter, a plain transformers model or ONNX, with a "
                       "model card", description="Export RUN_DIR for plain peft (--format peft: adapter_config.json + "
                       "adapter_model.safetensors), transformers (merged: the delta folded into the weights) or ONNX "
                       "Runtime (onnx: the merged model, checked against PyTorch), with a model card README.md. "
                       "Options: model.name_or_path=DIR (a moved base).")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("overrides", nargs="*", metavar="key=value")
    p.add_argument("--format", required=True, choices=["peft", "merged", "onnx"])
    p.add_argument("--out", required=True, metavar="DIR", help="a new or empty folder, outside any run folder")
    p.add_argument("--overwrite", action="store_true", help="replace DIR if it exists")
    p.add_argument("--push-to-hub", metavar="ID", help="upload the folder to the hub as model repo ID")
    p.set_defaults(fn=_export)
    return parser


def _train_help() -> str:
    from omegaconf import OmegaConf

    from .config.compose import load_config

    return TRAIN_HELP + OmegaConf.to_yaml(load_config(["data_dir=null"]))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    if argv[:1] == ["train"] and any(a in ("-h", "--help") for a in argv[1:]):
        print(_train_help())
        return 0
    args, extra = parser.parse_known_args(argv)
    if extra:  # key=value after a flag (`study glue --dry-run seeds=[1,2]`) are still overrides
        if not hasattr(args, "overrides") or any(a.startswith("-") for a in extra):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        args.overrides += extra
    if args.command is None:
        parser.print_help()
        return 0
    debug = args.debug or os.environ.get("HYDRA_FULL_ERROR") == "1"
    try:
        return args.fn(args)
    except UserError as e:
        if debug:
            traceback.print_exc()
        for line in str(e).splitlines() or [""]:  # a preflight lists several problems, one line each
            print(f"peftbench: error: {line}", file=sys.stderr)
        return 2
    except Stopped as e:  # a study: its one line says how to resume
        print(f"peftbench: {e}", file=sys.stderr)
        return e.code
    except KeyboardInterrupt as e:
        print(f"peftbench: interrupted{': ' + str(e) if str(e) else ''}", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
