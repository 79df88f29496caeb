#!/usr/bin/env python3
"""The peer for eval_hooks/lm_eval_task.h: lm-eval-harness's prompt and scoring logic for local data,
written from the harness's lm_eval/api/task.py (ConfigurableTask.doc_to_text / doc_to_target /
doc_to_choice / fewshot_context / process_results), lm_eval/api/samplers.py (ContextSampler,
FirstNSampler), lm_eval/filters (RegexFilter, WhitespaceFilter, Lowercase/UppercaseFilter, take_first)
and HF evaluate's exact_match, and run with Python's own yaml, jinja2, random, ast and re: the C++
reimplementation is checked against the language it imitates.

stdin:  {"tasks": [{"file": path, "responses": [str per evaluated doc] (generate_until)}]}
stdout: [{"requests": [{"context", "choices", "gold", "targets"}], "scores": [float per doc]}
         | {"error": str}]   scores: the first filter pipeline's first metric, as lm-eval computes it.

Paths in a task file are relative to the file that names them (posttrain's rule; datasets resolves
them against the working directory), and few-shot draws use lm-eval's default seed, 1234.
"""
import ast
import csv
import json
import os
import random
import re
import string
import sys

import jinja2
import yaml


def load_config(path):
    with open(path, encoding="utf-8") as f:
        cfg = yaml.safe_load(f)
    base = os.path.dirname(path)
    if "dataset" in cfg:
        cfg["dataset"] = os.path.join(base, cfg["dataset"])
    files = (cfg.get("dataset_kwargs") or {}).get("data_files")
    if files is not None:
        def resolve(v):
            return [os.path.join(base, x) for x in v] if isinstance(v, list) else os.path.join(base, v)
        cfg["dataset_kwargs"]["data_files"] = (
            {k: resolve(v) for k, v in files.items()} if isinstance(files, dict) else resolve(files))
    if "include" in cfg:
        parent = load_config(os.path.join(base, cfg.pop("include")))
        parent.update(cfg)
        cfg = parent
    return cfg


def read_json(path):
    with open(path, encoding="utf-8") as f:
        text = f.read()
    if text.lstrip().startswith("["):
        return json.loads(text)
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def read_csv(path):
    with open(path, encoding="utf-8-sig", newline="") as f:
        rows = list(csv.DictReader(f))
    columns = list(rows[0].keys()) if rows else []

    def typed(column):  # pandas' inference, as datasets' csv builder gets it
        values = [r[column] for r in rows]
        try:
            return [int(v) for v in values]
        except ValueError:
            pass
        try:
            return [float(v) for v in values]
        except ValueError:
            return values

    cols = {c: typed(c) for c in columns}
    return [{c: cols[c][i] for c in columns} for i in range(len(rows))]


def load_splits(cfg):
    if "dataset" in cfg:
        return {"test": read_json(cfg["dataset"])}
    files = cfg["dataset_kwargs"]["data_files"]
    if not isinstance(files, dict):
        files = {"train": files}
    reader = read_json if cfg["dataset_path"] == "json" else read_csv
    out = {}
    for split, paths in files.items():
        out[split] = []
        for p in paths if isinstance(paths, list) else [paths]:
            out[split].extend(reader(p))
    return out


ENV = jinja2.Environment(loader=jinja2.BaseLoader(), undefined=jinja2.StrictUndefined, keep_trailing_newline=True)


def apply_template(template, doc):
    return ENV.from_string(template).render(**doc)


class Task:
    def __init__(self, cfg):
        self.cfg = cfg
        self.splits = load_splits(cfg)
        self.test_split = cfg.get("test_split", "test" if "dataset" in cfg else None)
        eval_split = self.test_split if self.test_split is not None else cfg.get("validation_split")
        self.docs = self.splits[eval_split]
        self.features = set()
        for d in self.docs:
            self.features.update(d.keys())
        self.target_delimiter = cfg.get("target_delimiter", " ")
        if cfg.get("chat"):
            self.target_delimiter = ""
        self.fewshot_delimiter = cfg.get("fewshot_delimiter", "\n\n")
        self.fewshot_config = cfg.get("fewshot_config") or {}
        self.rnd = random.Random(1234)

    def doc_to_text(self, doc, spec=None):
        spec = spec if spec is not None else self.cfg["doc_to_text"]
        if isinstance(spec, int):
            return spec
        if spec in self.features:
            return doc[spec]
        text = apply_template(spec, doc)
        if text.isdigit() and self.cfg.get("doc_to_choice") is not None:
            return ast.literal_eval(text)
        return text

    def doc_to_target(self, doc, spec=None):
        spec = spec if spec is not None else self.cfg["doc_to_target"]
        if isinstance(spec, int) or isinstance(spec, list):
            return spec
        if spec in self.features:
            return doc[spec]
        target = apply_template(spec, doc)
        if target.isdigit() and self.cfg.get("doc_to_choice") is not None:
            return ast.literal_eval(target)
        if len(target) >= 2 and target[0] == "[" and target[-1] == "]":
            try:
                return ast.literal_eval(target)
            except (SyntaxError, ValueError):
                return target
        return target

    def doc_to_choice(self, doc, spec=None):
        spec = spec if spec is not None else self.cfg["doc_to_choice"]
        if isinstance(spec, str):
            if spec in self.features:
                return doc[spec]
            return ast.literal_eval(apply_template(spec, doc))
        if isinstance(spec, list):
            return spec
        if isinstance(spec, dict):
            return list(spec.values())
        raise TypeError(spec)

    def fewshot_docs(self):
        if "samples" in self.fewshot_config:
            return self.fewshot_config["samples"]
        for key in ("fewshot_split", "training_split", "validation_split", "test_split"):
            if self.cfg.get(key) is not None:
                return self.splits[self.cfg[key]]
        return self.docs

    def get_context(self, doc, num_fewshot):
        n = num_fewshot + 1 if self.cfg.get("fewshot_split") == self.test_split else num_fewshot
        docs = self.fewshot_docs()
        if self.fewshot_config.get("sampler", "default") == "first_n":
            drawn = docs[:n]
        else:
            drawn = self.rnd.sample(docs, n)
        selected = [x for x in drawn if x != doc][:num_fewshot]
        text_spec = self.fewshot_config.get("doc_to_text")
        target_spec = self.fewshot_config.get("doc_to_target")
        choice_spec = self.fewshot_config.get("doc_to_choice")
        out = ""
        for d in selected:
            content = self.doc_to_text(d, text_spec)
            target = self.doc_to_target(d, target_spec)
            if isinstance(content, str):
                out += content
            elif isinstance(content, int):
                out += self.doc_to_choice(d, choice_spec)[content]
            if target != "":
                out += self.target_delimiter
                out += (str(target[0]) if isinstance(target, list)
                        else target if self.cfg.get("doc_to_choice") is None or isinstance(target, str)
                        else str(self.doc_to_choice(d, choice_spec)[target]))
                out += self.fewshot_delimiter
        return out

    def context(self, doc):
        out = ""
        if self.cfg.get("description"):
            out = apply_template(self.cfg["description"], doc)
        num_fewshot = self.cfg.get("num_fewshot", 0) or 0
        if num_fewshot > 0:
            out += self.get_context(doc, num_fewshot)
        return out + self.doc_to_text(doc)

    def request(self, doc):
        r = {"context": self.context(doc)}
        target = self.doc_to_target(doc)
        if self.cfg["output_type"] == "multiple_choice":
            choices = self.doc_to_choice(doc)
            r["choices"] = [c if isinstance(c, str) else json.dumps(c) for c in choices]
            r["gold"] = target if isinstance(target, int) else choices.index(target)
        else:
            if self.cfg.get("doc_to_choice") is not None:
                target = self.doc_to_choice(doc)[target]
            r["targets"] = [str(t) for t in target] if isinstance(target, list) else [str(target)]
        return r

    # --- generate_until scoring: until, the first filter pipeline, the first metric -------------
    def until(self):
        kwargs = self.cfg.get("generation_kwargs")
        if kwargs is None:
            return self.cfg.get("until", [self.fewshot_delimiter] if "metric" not in self.cfg else ["\n"])
        until = kwargs.get("until", [])
        return until if isinstance(until, list) else [until]

    def apply_filter(self, steps, resp):
        for step in steps:
            f = step["function"]
            if f == "regex":
                pattern = re.compile(step.get("regex_pattern", r"#### (\-?[0-9\.\,]+)"))
                group_select = step.get("group_select", 0)
                fallback = step.get("fallback", "[invalid]")
                match = pattern.findall(resp)
                if match:
                    match = match[group_select]
                    if isinstance(match, tuple):
                        match = [m for m in match if m]
                        match = match[0] if match else fallback
                    match = match.strip()
                else:
                    match = fallback
                resp = match
            elif f == "remove_whitespace":
                resp = resp.lstrip()
            elif f == "lowercase":
                resp = resp.lower()
            elif f == "uppercase":
                resp = resp.upper()
        return resp

    @staticmethod
    def exact_match(pred, ref, regexes_to_ignore=None, ignore_case=False, ignore_punctuation=False,
                    ignore_numbers=False, **_):
        for s in regexes_to_ignore or []:
            pred = re.sub(s, "", pred)
            ref = re.sub(s, "", ref)
        if ignore_case:
            pred, ref = pred.lower(), ref.lower()
        if ignore_punctuation:
            table = str.maketrans("", "", string.punctuation)
            pred, ref = pred.translate(table), ref.translate(table)
        if ignore_numbers:
            table = str.maketrans("", "", string.digits)
            pred, ref = pred.translate(table), ref.translate(table)
        return float(pred == ref)

    def score(self, request, response):
        for stop in self.until():
            if stop:
                response = response.split(stop)[0]
        if "metric" in self.cfg:  # posttrain's short form: trimmed, exact_match or contains
            answer = response.strip()
            refs = [t.strip() for t in request["targets"]]
            if self.cfg["metric"] == "contains":
                return max(float(r in answer) for r in refs)
            return max(float(answer == r) for r in refs)
        filters = self.cfg.get("filter_list") or [{"name": "none", "filter": [{"function": "take_first"}]}]
        answer = self.apply_filter(filters[0]["filter"], response)
        metric = (self.cfg.get("metric_list") or [{"metric": "exact_match"}])[0]
        options = {k: v for k, v in metric.items() if k not in ("metric", "aggregation", "higher_is_better")}
        return max(self.exact_match(answer, ref, **options) for ref in request["targets"])


def main():
    out = []
    for case in json.load(sys.stdin)["tasks"]:
        try:
            task = Task(load_config(case["file"]))
            requests = [task.request(doc) for doc in task.docs]
            result = {"requests": requests}
            if "responses" in case:
                result["scores"] = [task.score(r, resp) for r, resp in zip(requests, case["responses"])]
            out.append(result)
        except Exception as e:  # reported per task, so one bad case does not hide the others
            out.append({"error": f"{type(e).__name__}: {e}"})
    json.dump(out, sys.stdout, ensure_ascii=False)


if __name__ == "__main__":
    main()
