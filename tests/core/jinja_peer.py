#!/usr/bin/env python3
"""The peer for core/jinja.h: renders templates with Python's jinja2 in the environments posttrain
claims to match, and prints what it rendered.

stdin:  {"cases": [{"template": str, "env": "chat" | "lm_eval", "context": {...}}, ...]}
stdout: [{"text": str, "spans": [[begin, end], ...]} | {"error": str}, ...]   (spans in UTF-8 bytes)

"chat" is transformers' apply_chat_template environment (transformers/utils/chat_template_utils.py):
a sandboxed environment with trim_blocks and lstrip_blocks, loop controls, json.dumps as tojson
(insertion order, non-ASCII kept), raise_exception, and {% generation %} blocks whose output
offsets are recorded while the template streams. "lm_eval" is lm-eval-harness's apply_template
environment (lm_eval/utils.py): StrictUndefined and keep_trailing_newline.
"""
import json
import re
import sys

import jinja2
from jinja2 import nodes
from jinja2.ext import Extension, loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment


class Generation(Extension):
    tags = {"generation"}

    def __init__(self, environment):
        super().__init__(environment)
        self.blocks = None  # the output streamed so far, while a render is tracked
        self.spans = None

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(["name:endgeneration"], drop_needle=True)
        return nodes.CallBlock(self.call_method("_mark"), [], [], body).set_lineno(lineno)

    def _mark(self, caller):
        text = caller()
        start = len("".join(self.blocks))
        self.spans.append((start, start + len(text)))
        return text


def chat_environment():
    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[Generation, loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    return env


def lm_eval_environment():
    def regex_replace(string, pattern, repl, count=0):  # lm_eval/utils.py registers this filter
        return re.sub(pattern, repl, string, count=count)

    env = jinja2.Environment(loader=jinja2.BaseLoader(), undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    env.filters["regex_replace"] = regex_replace
    return env


def render(env, case):
    template = env.from_string(case["template"])
    tracker = env.extensions.get(Generation.__module__ + "." + Generation.__name__) if env is CHAT else None
    if tracker is None:
        return {"text": template.render(**case["context"]), "spans": []}
    tracker.blocks, tracker.spans = [], []
    for block in template.generate(**case["context"]):
        tracker.blocks.append(block)
    text = "".join(tracker.blocks)
    to_bytes = lambda i: len(text[:i].encode("utf-8"))
    return {"text": text, "spans": [[to_bytes(b), to_bytes(e)] for b, e in tracker.spans]}


CHAT = chat_environment()
LM_EVAL = lm_eval_environment()

results = []
for case in json.load(sys.stdin)["cases"]:
    try:
        results.append(render(CHAT if case["env"] == "chat" else LM_EVAL, case))
    except Exception as error:  # the test compares only whether both sides failed
        results.append({"error": f"{type(error).__name__}: {error}"})
json.dump(results, sys.stdout, ensure_ascii=False)
