// A Jinja2 template engine: the subset that Hugging Face chat templates and lm-eval-harness task
// templates use (expressions, filters, tests, if / for / set / macro, loop variables, the string
// methods the Qwen templates call, raise_exception, HF's {% generation %} blocks).
//
// Why one is written here: chat templates and lm-eval prompts are Jinja, Debian packages no C++
// Jinja engine, and posttrain must render a template exactly as Python's jinja2 does (a checkpoint
// must see in training the bytes apply_chat_template gives it later). tests/core/test_jinja.cpp
// compares every rendering with python3-jinja2's, byte for byte.
//
// Anything outside the subset (an unknown tag, filter or test, a mutating method) is an error
// naming the template's origin and line, never literal text or a silent no-op.
#pragma once

#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

namespace posttrain {

struct JinjaOptions {
  bool trim_blocks = false;  // drop the first newline after a block tag or comment
  bool lstrip_blocks = false;  // drop spaces and tabs before a block tag that starts a line
  bool keep_trailing_newline = false;  // jinja2's default drops one newline at the template's end
  bool strict_undefined = false;  // printing or testing an undefined value is an error
  // tojson as transformers binds it (json.dumps, insertion order, non-ASCII kept) rather than
  // jinja2's own (sorted keys, <>&' escaped as \u003c...).
  bool transformers_tojson = false;
  bool regex_replace_filter = false;  // lm-eval registers regex_replace (Python re.sub) in its environment
};

// The environment transformers' apply_chat_template renders with.
JinjaOptions chat_template_options();
// The environment lm-eval-harness renders doc_to_text / doc_to_target / doc_to_choice with.
JinjaOptions lm_eval_options();

struct JinjaRender {
  std::string text;
  // [begin, end) byte offsets of each {% generation %} ... {% endgeneration %} block's output.
  std::vector<std::pair<size_t, size_t>> generation_spans;
};

class JinjaTemplate {
 public:
  // Parses now: syntax errors, unknown tags, filters and tests throw UserError("<origin>:<line>: ...").
  JinjaTemplate(const std::string& source, const std::string& origin, JinjaOptions options = {});
  ~JinjaTemplate();
  JinjaTemplate(JinjaTemplate&&) noexcept;
  JinjaTemplate& operator=(JinjaTemplate&&) noexcept;

  // `context` is an object whose keys become the template's variables (key order is kept, as
  // Python's dicts keep it). Runtime errors (raise_exception, a type error) throw UserError.
  JinjaRender render(const nlohmann::ordered_json& context) const;

 private:
  struct Parsed;
  std::unique_ptr<Parsed> parsed_;
};

// Appends a code point's UTF-8 bytes.
void append_utf8(std::string& out, char32_t code_point);

// A Python string literal whose opening quote is text[pos]: its body appended to `out` with the
// escapes decoded as Python decodes them (\n \t \r \\ \' \" \a \b \f \v \0, \xNN, \uNNNN,
// \UNNNNNNNN; backslash-newline continues the line; other escapes kept as written). Returns the index
// after the closing quote and adds the newlines read to *newlines. UserError (without a location:
// callers add theirs) when it is unterminated or an escape is malformed. Jinja's string literals
// and the Python lists lm-eval templates print (ast.literal_eval) are both read with it.
size_t read_python_string(const std::string& text, size_t pos, std::string& out, int* newlines);

// Python's str.lower() / str.upper() as the engine applies them (Unicode simple case mappings).
std::string python_lower(const std::string& text);
std::string python_upper(const std::string& text);

// Python's repr of a float (shortest round-trip digits; 1e-05, 1e+16, 2.0), as str() and json.dumps
// print it.
std::string python_float_repr(double value);

}  // namespace posttrain
