// Jinja2 for chat and lm-eval templates: values with Python's semantics, a lexer that applies
// jinja2's whitespace rules, a recursive-descent parser with jinja2's operator precedence, and a
// tree-walking renderer. Reference for every rule: jinja2 3.1 (lexer.py, parser.py, filters.py,
// tests.py, runtime.py) and CPython's str / json behaviour.
#include "core/jinja.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <functional>
#include <map>
#include <set>

#include <utf8proc.h>

#include "core/error.h"
#include "core/python_re.h"

namespace posttrain {

namespace {

// ---------------------------------------------------------------------------------------------
// UTF-8: Python strings index, slice and measure by code point.

std::vector<char32_t> decode_utf8(const std::string& s) {
  std::vector<char32_t> out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    int extra = c < 0x80 ? 0 : c < 0xE0 ? 1 : c < 0xF0 ? 2 : 3;
    char32_t cp = extra == 0 ? c : extra == 1 ? (c & 0x1F) : extra == 2 ? (c & 0x0F) : (c & 0x07);
    if (c >= 0x80 && c < 0xC0) extra = 0, cp = c;  // stray continuation byte: keep it as is
    ++i;
    for (int k = 0; k < extra && i < s.size(); ++k, ++i) cp = (cp << 6) | (static_cast<unsigned char>(s[i]) & 0x3F);
    out.push_back(cp);
  }
  return out;
}

std::string encode_utf8(const std::vector<char32_t>& cps, size_t begin, size_t end) {
  std::string out;
  for (size_t i = begin; i < end; ++i) append_utf8(out, cps[i]);
  return out;
}

// str.isspace(): ASCII whitespace, the C0 separators and Unicode's space characters.
bool is_python_space(char32_t c) {
  return c == ' ' || (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x1F) || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

// ---------------------------------------------------------------------------------------------
// Values

struct Value;
using List = std::vector<Value>;
struct Dict;
struct Args;
using Function = std::function<Value(Args&)>;

struct Value {
  enum Kind { kUndefined, kNone, kBool, kInt, kFloat, kString, kList, kDict, kNamespace, kCallable };
  Kind kind = kUndefined;
  bool b = false;
  int64_t i = 0;
  double f = 0;
  std::string s;  // string value, or the name an undefined value was looked up by
  bool lenient = false;  // an undefined that even strict mode prints as "" (else-less if)
  std::shared_ptr<List> list;  // kList (tuples too)
  std::shared_ptr<Dict> dict;  // kDict, kNamespace
  std::shared_ptr<Function> call;  // kCallable

  static Value undefined(const std::string& name) {
    Value v;
    v.s = name;
    return v;
  }
  static Value none() {
    Value v;
    v.kind = kNone;
    return v;
  }
  static Value boolean(bool x) {
    Value v;
    v.kind = kBool;
    v.b = x;
    return v;
  }
  static Value integer(int64_t x) {
    Value v;
    v.kind = kInt;
    v.i = x;
    return v;
  }
  static Value real(double x) {
    Value v;
    v.kind = kFloat;
    v.f = x;
    return v;
  }
  static Value string(std::string x) {
    Value v;
    v.kind = kString;
    v.s = std::move(x);
    return v;
  }
  static Value make_list(List items = {}) {
    Value v;
    v.kind = kList;
    v.list = std::make_shared<List>(std::move(items));
    return v;
  }
  static Value make_dict();
  static Value function(Function fn) {
    Value v;
    v.kind = kCallable;
    v.call = std::make_shared<Function>(std::move(fn));
    return v;
  }
  bool is_undefined() const { return kind == kUndefined; }
  bool is_number() const { return kind == kInt || kind == kFloat || kind == kBool; }
  double number() const { return kind == kFloat ? f : kind == kInt ? static_cast<double>(i) : (b ? 1.0 : 0.0); }
};

// Insertion-ordered, like Python's dict.
struct Dict {
  std::vector<std::pair<std::string, Value>> items;
  const Value* find(const std::string& key) const {
    for (const auto& item : items)
      if (item.first == key) return &item.second;
    return nullptr;
  }
  void set(const std::string& key, Value value) {
    for (auto& item : items)
      if (item.first == key) {
        item.second = std::move(value);
        return;
      }
    items.emplace_back(key, std::move(value));
  }
};

Value Value::make_dict() {
  Value v;
  v.kind = kDict;
  v.dict = std::make_shared<Dict>();
  return v;
}

struct Args {
  std::vector<Value> positional;
  std::vector<std::pair<std::string, Value>> keywords;
  int line = 0;
  // Keyword `name` or positional `index`, else the default.
  Value get(size_t index, const std::string& name, Value fallback = Value()) const {
    for (const auto& kw : keywords)
      if (kw.first == name) return kw.second;
    return index < positional.size() ? positional[index] : fallback;
  }
};

// Thrown while rendering; the renderer prefixes origin and line.
struct RenderError {
  std::string message;
  int line;
};

struct Raised {  // raise_exception(): the template's own message, kept as written
  std::string message;
};

const char* kind_name(const Value& v) {  // Python's type names, in Value::Kind's order
  static const char* const names[] = {"undefined", "NoneType", "bool", "int",       "float",
                                      "str",       "list",     "dict", "Namespace", "function"};
  return names[v.kind];
}

Value from_json(const nlohmann::ordered_json& j) {
  switch (j.type()) {
    case nlohmann::ordered_json::value_t::null:
      return Value::none();
    case nlohmann::ordered_json::value_t::boolean:
      return Value::boolean(j.get<bool>());
    case nlohmann::ordered_json::value_t::number_integer:
    case nlohmann::ordered_json::value_t::number_unsigned:
      return Value::integer(j.get<int64_t>());
    case nlohmann::ordered_json::value_t::number_float:
      return Value::real(j.get<double>());
    case nlohmann::ordered_json::value_t::string:
      return Value::string(j.get<std::string>());
    case nlohmann::ordered_json::value_t::array: {
      auto v = Value::make_list();
      for (const auto& item : j) v.list->push_back(from_json(item));
      return v;
    }
    case nlohmann::ordered_json::value_t::object: {
      auto v = Value::make_dict();
      for (auto it = j.begin(); it != j.end(); ++it) v.dict->items.emplace_back(it.key(), from_json(it.value()));
      return v;
    }
    default:
      return Value::none();
  }
}

std::string repr(const Value& v);

// str(value)
std::string to_str(const Value& v) {
  switch (v.kind) {
    case Value::kUndefined:
      return "";
    case Value::kNone:
      return "None";
    case Value::kBool:
      return v.b ? "True" : "False";
    case Value::kInt:
      return std::to_string(v.i);
    case Value::kFloat:
      return python_float_repr(v.f);
    case Value::kString:
      return v.s;
    case Value::kNamespace:
      return "<Namespace>";
    case Value::kCallable:
      return "<function>";
    default:
      return repr(v);
  }
}

// repr(str): single quotes unless the text holds a ' and no ".
std::string repr_string(const std::string& s) {
  const char quote = s.find('\'') != std::string::npos && s.find('"') == std::string::npos ? '"' : '\'';
  std::string out(1, quote);
  for (char32_t c : decode_utf8(s)) {
    if (c == static_cast<char32_t>(quote) || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c == '\t') {
      out += "\\t";
    } else if (c < 0x20 || c == 0x7F) {
      char buffer[8];
      std::snprintf(buffer, sizeof buffer, "\\x%02x", static_cast<unsigned>(c));
      out += buffer;
    } else {
      append_utf8(out, c);
    }
  }
  return out + quote;
}

std::string repr(const Value& v) {
  switch (v.kind) {
    case Value::kString:
      return repr_string(v.s);
    case Value::kList: {
      std::string out = "[";
      for (size_t k = 0; k < v.list->size(); ++k) out += (k ? ", " : "") + repr((*v.list)[k]);
      return out + "]";
    }
    case Value::kDict: {
      std::string out = "{";
      for (size_t k = 0; k < v.dict->items.size(); ++k)
        out += (k ? ", " : "") + repr_string(v.dict->items[k].first) + ": " + repr(v.dict->items[k].second);
      return out + "}";
    }
    default:
      return to_str(v);
  }
}

bool truthy(const Value& v) {
  switch (v.kind) {
    case Value::kUndefined:
    case Value::kNone:
      return false;
    case Value::kBool:
      return v.b;
    case Value::kInt:
      return v.i != 0;
    case Value::kFloat:
      return v.f != 0;
    case Value::kString:
      return !v.s.empty();
    case Value::kList:
      return !v.list->empty();
    case Value::kDict:
      return !v.dict->items.empty();
    default:
      return true;
  }
}

bool equals(const Value& a, const Value& b) {
  if (a.is_number() && b.is_number()) {
    if (a.kind != Value::kFloat && b.kind != Value::kFloat) {
      const int64_t x = a.kind == Value::kInt ? a.i : a.b, y = b.kind == Value::kInt ? b.i : b.b;
      return x == y;
    }
    return a.number() == b.number();
  }
  if (a.kind != b.kind) return false;
  switch (a.kind) {
    case Value::kUndefined:
    case Value::kNone:
      return true;
    case Value::kString:
      return a.s == b.s;
    case Value::kList:
      if (a.list->size() != b.list->size()) return false;
      for (size_t k = 0; k < a.list->size(); ++k)
        if (!equals((*a.list)[k], (*b.list)[k])) return false;
      return true;
    case Value::kDict:
      if (a.dict->items.size() != b.dict->items.size()) return false;
      for (const auto& item : a.dict->items) {
        const Value* other = b.dict->find(item.first);
        if (!other || !equals(item.second, *other)) return false;
      }
      return true;
    default:
      return a.dict == b.dict && a.call == b.call;
  }
}

// a < b as Python orders numbers, strings (by code point: UTF-8 byte order agrees) and lists.
int compare(const Value& a, const Value& b, int line) {
  if (a.is_number() && b.is_number()) {
    if (a.kind != Value::kFloat && b.kind != Value::kFloat) {
      const int64_t x = a.kind == Value::kInt ? a.i : a.b, y = b.kind == Value::kInt ? b.i : b.b;
      return x < y ? -1 : x > y ? 1 : 0;
    }
    return a.number() < b.number() ? -1 : a.number() > b.number() ? 1 : 0;
  }
  if (a.kind == Value::kString && b.kind == Value::kString) return a.s < b.s ? -1 : a.s > b.s ? 1 : 0;
  if (a.kind == Value::kList && b.kind == Value::kList) {
    for (size_t k = 0; k < std::min(a.list->size(), b.list->size()); ++k) {
      const int c = compare((*a.list)[k], (*b.list)[k], line);
      if (c != 0) return c;
    }
    return a.list->size() < b.list->size() ? -1 : a.list->size() > b.list->size() ? 1 : 0;
  }
  throw RenderError{std::string("cannot order ") + kind_name(a) + " and " + kind_name(b), line};
}

// json.dumps: ensure_ascii=False keeps non-ASCII; html_safe escapes <>&' as jinja2's tojson does.
void dump_json_string(std::string& out, const std::string& s, bool ensure_ascii, bool html_safe) {
  out += '"';
  for (char32_t c : decode_utf8(s)) {
    char buffer[16];
    if (c == '"') {
      out += "\\\"";
    } else if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c == '\t') {
      out += "\\t";
    } else if (c == '\b') {
      out += "\\b";
    } else if (c == '\f') {
      out += "\\f";
    } else if (c < 0x20 || (html_safe && (c == '<' || c == '>' || c == '&' || c == '\'')) ||
               (ensure_ascii && c >= 0x7F)) {
      if (c >= 0x10000) {  // a surrogate pair, as Python writes it
        const char32_t v = c - 0x10000;
        std::snprintf(buffer, sizeof buffer, "\\u%04x\\u%04x", static_cast<unsigned>(0xD800 + (v >> 10)),
                      static_cast<unsigned>(0xDC00 + (v & 0x3FF)));
      } else {
        std::snprintf(buffer, sizeof buffer, "\\u%04x", static_cast<unsigned>(c));
      }
      out += buffer;
    } else {
      append_utf8(out, c);
    }
  }
  out += '"';
}

struct JsonStyle {
  bool ensure_ascii = false, sort_keys = false, html_safe = false;
  int indent = -1;  // -1: one line
  std::string item_separator = ", ", key_separator = ": ";
};

void dump_json(std::string& out, const Value& v, const JsonStyle& style, int depth, int line) {
  auto newline = [&](int level) {
    if (style.indent < 0) return;
    out += '\n';
    out.append(static_cast<size_t>(style.indent * level), ' ');
  };
  switch (v.kind) {
    case Value::kNone:
      out += "null";
      return;
    case Value::kBool:
      out += v.b ? "true" : "false";
      return;
    case Value::kInt:
      out += std::to_string(v.i);
      return;
    case Value::kFloat:
      out += std::isnan(v.f) ? "NaN" : std::isinf(v.f) ? (v.f > 0 ? "Infinity" : "-Infinity") : python_float_repr(v.f);
      return;
    case Value::kString:
      dump_json_string(out, v.s, style.ensure_ascii, style.html_safe);
      return;
    case Value::kList:
      if (v.list->empty()) {
        out += "[]";
        return;
      }
      out += '[';
      for (size_t k = 0; k < v.list->size(); ++k) {
        if (k) out += style.item_separator;
        newline(depth + 1);
        dump_json(out, (*v.list)[k], style, depth + 1, line);
      }
      newline(depth);
      out += ']';
      return;
    case Value::kDict:
    case Value::kNamespace: {
      if (v.dict->items.empty()) {
        out += "{}";
        return;
      }
      std::vector<const std::pair<std::string, Value>*> items;
      for (const auto& item : v.dict->items) items.push_back(&item);
      if (style.sort_keys)
        std::stable_sort(items.begin(), items.end(), [](auto* a, auto* b) { return a->first < b->first; });
      out += '{';
      for (size_t k = 0; k < items.size(); ++k) {
        if (k) out += style.item_separator;
        newline(depth + 1);
        dump_json_string(out, items[k]->first, style.ensure_ascii, style.html_safe);
        out += style.key_separator;
        dump_json(out, items[k]->second, style, depth + 1, line);
      }
      newline(depth);
      out += '}';
      return;
    }
    default:
      throw RenderError{std::string("Object of type ") + kind_name(v) + " is not JSON serializable", line};
  }
}

// ---------------------------------------------------------------------------------------------
// Lexer: the template becomes text pieces and tags; a tag's inside becomes tokens.

struct Token {
  enum Kind { kName, kString, kInt, kFloat, kOperator, kEnd };
  Kind kind;
  std::string text;  // name, operator, or the unescaped string
  int64_t i = 0;
  double f = 0;
  int line = 0;
};

struct Piece {
  enum Kind { kText, kOutput, kBlock };
  Kind kind;
  std::string text;  // kText
  std::vector<Token> tokens;
  int line = 0;
};

class Lexer {
 public:
  Lexer(const std::string& source, const std::string& origin, const JinjaOptions& options)
      : origin_(origin), options_(options) {
    // Newlines normalised to "\n"; jinja2 drops one trailing newline unless told to keep it.
    for (size_t k = 0; k < source.size(); ++k) {
      if (source[k] == '\r') {
        src_ += '\n';
        if (k + 1 < source.size() && source[k + 1] == '\n') ++k;
      } else {
        src_ += source[k];
      }
    }
    if (!options.keep_trailing_newline && !src_.empty() && src_.back() == '\n') src_.pop_back();
  }

  std::vector<Piece> run() {
    std::vector<Piece> pieces;
    size_t pos = 0;
    // jinja2's lstrip_blocks strips a tag's indentation when the tag starts a line: the text before
    // it holds only spaces and tabs after its last newline, or holds no newline and the previous tag
    // ended a line (trim_blocks took the newline after it).
    bool line_starting = true;
    while (true) {
      const size_t open = find_tag(pos);
      std::string text = src_.substr(pos, (open == std::string::npos ? src_.size() : open) - pos);
      if (open == std::string::npos) {
        if (!text.empty()) pieces.push_back({Piece::kText, text, {}, line_at(pos)});
        break;
      }
      const char kind = src_[open + 1];  // '{', '%' or '#'
      const bool minus = open + 2 < src_.size() && src_[open + 2] == '-';
      const bool plus = open + 2 < src_.size() && src_[open + 2] == '+';
      if (minus) {
        while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back()))) text.pop_back();
      } else if (options_.lstrip_blocks && kind != '{' && !plus) {
        const size_t newline = text.rfind('\n');
        const size_t from = newline == std::string::npos ? 0 : newline + 1;
        const bool blank = text.find_first_not_of(" \t\f\v", from) == std::string::npos;
        if (blank && from < text.size() && (newline != std::string::npos || line_starting)) text.erase(from);
      }
      if (!text.empty()) pieces.push_back({Piece::kText, text, {}, line_at(pos)});
      const int line = line_at(open);
      const size_t inner = open + 2 + ((minus || plus) ? 1 : 0);
      size_t close;  // index of the closer's first character
      bool close_minus = false, close_plus = false;
      std::vector<Token> tokens;
      if (kind == '#') {
        close = src_.find("#}", inner);
        if (close == std::string::npos) fail(line, "unclosed comment");
        close_minus = close > inner && src_[close - 1] == '-';
      } else {
        close = tokenize(inner, kind == '{' ? "}}" : "%}", line, tokens);
        close_minus = tokens_end_minus_;
        close_plus = tokens_end_plus_;
      }
      pos = close + 2;
      line_starting = after_tag(pos, kind != '{', close_minus, close_plus);
      if (kind == '#') continue;
      const bool raw = kind == '%' && !tokens.empty() && tokens[0].kind == Token::kName && tokens[0].text == "raw";
      pieces.push_back({kind == '{' ? Piece::kOutput : Piece::kBlock, "", std::move(tokens), line});
      if (!raw) continue;
      // Everything up to {% endraw %} is text, as written.
      for (size_t search = pos;;) {
        const size_t candidate = src_.find("{%", search);
        if (candidate == std::string::npos) fail(line, "raw block without {% endraw %}");
        size_t k = candidate + 2;
        const bool end_minus = k < src_.size() && src_[k] == '-';
        if (end_minus || (k < src_.size() && src_[k] == '+')) ++k;
        while (k < src_.size() && std::isspace(static_cast<unsigned char>(src_[k]))) ++k;
        if (src_.compare(k, 6, "endraw") != 0) {
          search = candidate + 2;
          continue;
        }
        std::string raw_text = src_.substr(pos, candidate - pos);
        if (end_minus)
          while (!raw_text.empty() && std::isspace(static_cast<unsigned char>(raw_text.back()))) raw_text.pop_back();
        pieces.push_back({Piece::kText, raw_text, {}, line_at(pos)});
        std::vector<Token> end_tokens;
        const size_t end_close = tokenize(k, "%}", line_at(candidate), end_tokens);
        pieces.push_back({Piece::kBlock, "", end_tokens, line_at(candidate)});
        pos = end_close + 2;
        line_starting = after_tag(pos, true, tokens_end_minus_, tokens_end_plus_);
        break;
      }
    }
    return pieces;
  }

 private:
  [[noreturn]] void fail(int line, const std::string& what) const {
    throw UserError(origin_ + ":" + std::to_string(line) + ": " + what);
  }

  // After a tag closes at `pos`: "-" eats all whitespace, trim_blocks one newline after a block tag
  // or comment. Returns whether what was eaten ended a line.
  bool after_tag(size_t& pos, bool block_or_comment, bool minus, bool plus) {
    if (minus) {
      size_t k = pos;
      while (k < src_.size() && std::isspace(static_cast<unsigned char>(src_[k]))) ++k;
      const bool ended_line = k > pos && src_[k - 1] == '\n';
      pos = k;
      return ended_line;
    }
    if (block_or_comment && options_.trim_blocks && !plus && pos < src_.size() && src_[pos] == '\n') {
      ++pos;
      return true;
    }
    return false;
  }

  int line_at(size_t pos) {
    while (line_pos_ < pos && line_pos_ < src_.size()) {
      if (src_[line_pos_] == '\n') ++line_;
      ++line_pos_;
    }
    return line_;
  }

  size_t find_tag(size_t from) const {
    for (size_t k = src_.find('{', from); k != std::string::npos && k + 1 < src_.size(); k = src_.find('{', k + 1))
      if (src_[k + 1] == '{' || src_[k + 1] == '%' || src_[k + 1] == '#') return k;
    return std::string::npos;
  }

  // Tokens from `pos` up to the closer ("}}" or "%}", with an optional "-" or "+" before it).
  size_t tokenize(size_t pos, const std::string& closer, int line, std::vector<Token>& tokens) {
    tokens_end_minus_ = tokens_end_plus_ = false;
    int depth = 0;  // brackets: a "}}" inside {{ {'a': {'b': 1}} }} closes a dict first
    while (true) {
      while (pos < src_.size() && std::isspace(static_cast<unsigned char>(src_[pos]))) {
        if (src_[pos] == '\n') ++line;
        ++pos;
      }
      if (pos >= src_.size()) fail(line, "tag not closed with " + closer);
      if (depth == 0) {
        for (const char modifier : {'-', '+'})
          if (src_[pos] == modifier && src_.compare(pos + 1, 2, closer) == 0) {
            (modifier == '-' ? tokens_end_minus_ : tokens_end_plus_) = true;
            return pos + 1;
          }
        if (src_.compare(pos, 2, closer) == 0) return pos;
      }
      Token t;
      t.line = line;
      const char c = src_[pos];
      if (std::isalpha(static_cast<unsigned char>(c)) || c == '_') {
        size_t k = pos;
        while (k < src_.size() && (std::isalnum(static_cast<unsigned char>(src_[k])) || src_[k] == '_')) ++k;
        t.kind = Token::kName;
        t.text = src_.substr(pos, k - pos);
        pos = k;
      } else if (std::isdigit(static_cast<unsigned char>(c))) {
        size_t k = pos;
        bool is_float = false;
        while (k < src_.size() && (std::isdigit(static_cast<unsigned char>(src_[k])) || src_[k] == '_')) ++k;
        if (k + 1 < src_.size() && src_[k] == '.' && std::isdigit(static_cast<unsigned char>(src_[k + 1]))) {
          is_float = true;
          ++k;
          while (k < src_.size() && std::isdigit(static_cast<unsigned char>(src_[k]))) ++k;
        }
        if (k < src_.size() && (src_[k] == 'e' || src_[k] == 'E')) {
          size_t e = k + 1;
          if (e < src_.size() && (src_[e] == '+' || src_[e] == '-')) ++e;
          if (e < src_.size() && std::isdigit(static_cast<unsigned char>(src_[e]))) {
            is_float = true;
            k = e;
            while (k < src_.size() && std::isdigit(static_cast<unsigned char>(src_[k]))) ++k;
          }
        }
        std::string digits;
        for (size_t d = pos; d < k; ++d)
          if (src_[d] != '_') digits += src_[d];
        if (is_float) {
          t.kind = Token::kFloat;
          t.f = std::strtod(digits.c_str(), nullptr);
        } else {
          t.kind = Token::kInt;
          t.i = std::strtoll(digits.c_str(), nullptr, 10);
        }
        pos = k;
      } else if (c == '\'' || c == '"') {
        t.kind = Token::kString;
        pos = read_string(pos, line, t.text);
      } else {
        static const char* kOperators[] = {"//", "**", "==", "!=", "<=", ">=", "+", "-", "*", "/", "%", "~", "(",
                                           ")",  "[",  "]",  "{",  "}",  ",",  ".", ":", "|", "=", "<", ">", ";"};
        bool matched = false;
        for (const char* op : kOperators) {
          const size_t n = std::strlen(op);
          if (src_.compare(pos, n, op) == 0) {
            t.kind = Token::kOperator;
            t.text = op;
            pos += n;
            matched = true;
            break;
          }
        }
        if (!matched) fail(line, std::string("unexpected character '") + c + "'");
        if (t.text == "(" || t.text == "[" || t.text == "{") ++depth;
        if (t.text == ")" || t.text == "]" || t.text == "}") --depth;
      }
      tokens.push_back(t);
    }
  }

  // A quoted literal with Python's escapes (jinja2 decodes string literals as unicode-escape).
  size_t read_string(size_t pos, int& line, std::string& out) {
    int newlines = 0;
    try {
      pos = read_python_string(src_, pos, out, &newlines);
    } catch (const UserError& e) {
      fail(line + newlines, e.what());
    }
    line += newlines;
    return pos;
  }

  std::string src_, origin_;
  JinjaOptions options_;
  size_t line_pos_ = 0;
  int line_ = 1;
  bool tokens_end_minus_ = false, tokens_end_plus_ = false;
};

// ---------------------------------------------------------------------------------------------
// Syntax tree

struct Renderer;

struct Expr {
  int line = 0;
  virtual ~Expr() = default;
  virtual Value eval(Renderer& r) const = 0;
};
using ExprPtr = std::unique_ptr<Expr>;

struct CallArgs {  // argument expressions of a call, filter or test
  std::vector<ExprPtr> positional;
  std::vector<std::pair<std::string, ExprPtr>> keywords;
};

struct Stmt {
  int line = 0;
  virtual ~Stmt() = default;
  virtual void exec(Renderer& r) const = 0;
};
using StmtPtr = std::unique_ptr<Stmt>;
using Body = std::vector<StmtPtr>;

struct BreakSignal {};
struct ContinueSignal {};

using FilterFn = Value (*)(Renderer&, const Value&, Args&);
using TestFn = bool (*)(Renderer&, const Value&, Args&);
const std::map<std::string, FilterFn>& filters();
const std::map<std::string, TestFn>& tests();

struct Renderer {
  const JinjaOptions& options;
  std::string out;
  std::vector<std::pair<size_t, size_t>> spans;
  std::vector<std::map<std::string, Value>> scopes;  // [0]: the context and top-level sets
  std::map<std::string, Value> globals;
  int macro_depth = 0;

  Value lookup(const std::string& name) const {
    for (auto it = scopes.rbegin(); it != scopes.rend(); ++it) {
      auto found = it->find(name);
      if (found != it->end()) return found->second;
    }
    auto global = globals.find(name);
    return global != globals.end() ? global->second : Value::undefined(name);
  }

  // An undefined value used where a real one is needed: jinja2 raises UndefinedError.
  [[noreturn]] void undefined_error(const Value& v, int line) const {
    throw RenderError{"'" + v.s + "' is undefined", line};
  }
  void check_defined(const Value& v, int line) const {
    if (v.is_undefined() && options.strict_undefined && !v.lenient) undefined_error(v, line);
  }
  bool truth(const Value& v, int line) const {
    check_defined(v, line);
    return truthy(v);
  }
  std::string str(const Value& v, int line) const {
    check_defined(v, line);
    return to_str(v);
  }
  void exec(const Body& body) {
    for (const auto& stmt : body) stmt->exec(*this);
  }
};

Args eval_args(Renderer& r, const CallArgs& call, int line) {
  Args args;
  args.line = line;
  for (const auto& e : call.positional) args.positional.push_back(e->eval(r));
  for (const auto& kw : call.keywords) args.keywords.emplace_back(kw.first, kw.second->eval(r));
  return args;
}

// Python sequence protocol for `for`, `in`, filters: a list's items, a dict's keys, a string's chars.
List iterate(Renderer& r, const Value& v, int line) {
  switch (v.kind) {
    case Value::kList:
      return *v.list;
    case Value::kDict: {
      List keys;
      for (const auto& item : v.dict->items) keys.push_back(Value::string(item.first));
      return keys;
    }
    case Value::kString: {
      List chars;
      for (char32_t c : decode_utf8(v.s)) {
        std::string one;
        append_utf8(one, c);
        chars.push_back(Value::string(one));
      }
      return chars;
    }
    case Value::kUndefined:
      r.check_defined(v, line);
      return {};
    default:
      throw RenderError{std::string("'") + kind_name(v) + "' object is not iterable", line};
  }
}

// Python's index normalisation; false when out of range.
bool normalize_index(int64_t& index, size_t size) {
  if (index < 0) index += static_cast<int64_t>(size);
  return index >= 0 && index < static_cast<int64_t>(size);
}

Value string_method(const std::string& self, const std::string& name, int line);
Value dict_method(const Value& self, const std::string& name, int line);

// obj.name: attribute first (methods), then item, as jinja2's getattr does.
Value get_attribute(Renderer& r, const Value& obj, const std::string& name, int line) {
  switch (obj.kind) {
    case Value::kUndefined:
      r.undefined_error(obj, line);
    case Value::kString:
      return string_method(obj.s, name, line);
    case Value::kDict: {
      Value method = dict_method(obj, name, line);
      if (!method.is_undefined()) return method;
      const Value* found = obj.dict->find(name);
      return found ? *found : Value::undefined(name);
    }
    case Value::kNamespace: {
      const Value* found = obj.dict->find(name);
      return found ? *found : Value::undefined(name);
    }
    default:
      return Value::undefined(name);
  }
}

// obj[key]: item first, then attribute, as jinja2's getitem does.
Value get_item(Renderer& r, const Value& obj, const Value& key, int line) {
  if (obj.is_undefined()) r.undefined_error(obj, line);
  if (obj.kind == Value::kList || obj.kind == Value::kString) {
    if (key.kind != Value::kInt && key.kind != Value::kBool) return Value::undefined("[]");
    int64_t index = key.kind == Value::kInt ? key.i : key.b;
    if (obj.kind == Value::kList) {
      if (!normalize_index(index, obj.list->size())) return Value::undefined("[" + std::to_string(key.i) + "]");
      return (*obj.list)[static_cast<size_t>(index)];
    }
    const auto chars = decode_utf8(obj.s);
    if (!normalize_index(index, chars.size())) return Value::undefined("[" + std::to_string(key.i) + "]");
    return Value::string(encode_utf8(chars, static_cast<size_t>(index), static_cast<size_t>(index) + 1));
  }
  if ((obj.kind == Value::kDict || obj.kind == Value::kNamespace) && key.kind == Value::kString) {
    const Value* found = obj.dict->find(key.s);
    if (found) return *found;
    return obj.kind == Value::kDict ? dict_method(obj, key.s, line) : Value::undefined(key.s);
  }
  return Value::undefined("[]");
}

// Python slice semantics: obj[start:stop:step], each optional.
Value slice(const Value& obj, const Value& start_v, const Value& stop_v, const Value& step_v, int line) {
  auto get = [&](const Value& v, int64_t fallback) {
    if (v.is_undefined() || v.kind == Value::kNone) return fallback;
    if (v.kind != Value::kInt) throw RenderError{"slice indices must be integers", line};
    return v.i;
  };
  const int64_t step = get(step_v, 1);
  if (step == 0) throw RenderError{"slice step cannot be zero", line};
  std::vector<char32_t> chars;
  const bool is_string = obj.kind == Value::kString;
  if (is_string)
    chars = decode_utf8(obj.s);
  else if (obj.kind != Value::kList)
    throw RenderError{std::string("'") + kind_name(obj) + "' object is not subscriptable", line};
  const int64_t n = static_cast<int64_t>(is_string ? chars.size() : obj.list->size());
  auto clamp = [&](const Value& v, bool is_start) {
    const int64_t lo = step > 0 ? 0 : -1, hi = step > 0 ? n : n - 1;
    if (v.is_undefined() || v.kind == Value::kNone) return step > 0 ? (is_start ? lo : hi) : (is_start ? hi : lo);
    int64_t x = get(v, 0);
    if (x < 0) x += n;
    return std::min(std::max(x, lo), hi);
  };
  const int64_t begin = clamp(start_v, true), end = clamp(stop_v, false);
  std::string text;
  List items;
  for (int64_t k = begin; step > 0 ? k < end : k > end; k += step) {
    if (is_string)
      append_utf8(text, chars[static_cast<size_t>(k)]);
    else
      items.push_back((*obj.list)[static_cast<size_t>(k)]);
  }
  return is_string ? Value::string(text) : Value::make_list(std::move(items));
}

bool contains(Renderer& r, const Value& haystack, const Value& needle, int line) {
  if (haystack.kind == Value::kString) {
    if (needle.kind != Value::kString) throw RenderError{"'in <string>' requires string as left operand", line};
    return haystack.s.find(needle.s) != std::string::npos;
  }
  if (haystack.kind == Value::kDict || haystack.kind == Value::kNamespace)
    return needle.kind == Value::kString && haystack.dict->find(needle.s) != nullptr;
  for (const auto& item : iterate(r, haystack, line))
    if (equals(item, needle)) return true;
  return false;
}

// ---------------------------------------------------------------------------------------------
// Expressions

struct Literal : Expr {
  Value value;
  Value eval(Renderer&) const override { return value; }
};

struct Name : Expr {
  std::string name;
  Value eval(Renderer& r) const override { return r.lookup(name); }
};

struct ListExpr : Expr {
  std::vector<ExprPtr> items;
  Value eval(Renderer& r) const override {
    List values;
    for (const auto& item : items) values.push_back(item->eval(r));
    return Value::make_list(std::move(values));
  }
};

struct DictExpr : Expr {
  std::vector<std::pair<ExprPtr, ExprPtr>> items;
  Value eval(Renderer& r) const override {
    auto d = Value::make_dict();
    for (const auto& item : items) {
      Value key = item.first->eval(r);
      if (key.kind != Value::kString) throw RenderError{"dict keys must be strings here", line};
      d.dict->set(key.s, item.second->eval(r));
    }
    return d;
  }
};

struct GetAttr : Expr {
  ExprPtr object;
  std::string name;
  Value eval(Renderer& r) const override { return get_attribute(r, object->eval(r), name, line); }
};

struct GetItem : Expr {
  ExprPtr object, key;
  Value eval(Renderer& r) const override { return get_item(r, object->eval(r), key->eval(r), line); }
};

struct Slice : Expr {
  ExprPtr object, start, stop, step;  // each of start / stop / step may be null
  Value eval(Renderer& r) const override {
    Value obj = object->eval(r);
    if (obj.is_undefined()) r.undefined_error(obj, line);
    auto part = [&](const ExprPtr& e) { return e ? e->eval(r) : Value(); };
    return slice(obj, part(start), part(stop), part(step), line);
  }
};

struct Call : Expr {
  ExprPtr callee;
  CallArgs args;
  Value eval(Renderer& r) const override {
    Value fn = callee->eval(r);
    if (fn.is_undefined()) r.undefined_error(fn, line);
    if (fn.kind != Value::kCallable)
      throw RenderError{std::string("'") + kind_name(fn) + "' object is not callable", line};
    Args values = eval_args(r, args, line);
    return (*fn.call)(values);
  }
};

struct FilterExpr : Expr {
  ExprPtr input;  // null inside {% filter %} blocks (the block's output is the input)
  std::string name;
  FilterFn fn = nullptr;
  CallArgs args;
  Value apply(Renderer& r, const Value& value) const {
    Args values = eval_args(r, args, line);
    return fn(r, value, values);
  }
  Value eval(Renderer& r) const override { return apply(r, input->eval(r)); }
};

struct TestExpr : Expr {
  ExprPtr input;
  std::string name;
  TestFn fn = nullptr;
  CallArgs args;
  bool negated = false;
  Value eval(Renderer& r) const override {
    Value value = input->eval(r);
    Args values = eval_args(r, args, line);
    return Value::boolean(fn(r, value, values) != negated);
  }
};

struct Unary : Expr {
  std::string op;
  ExprPtr operand;
  Value eval(Renderer& r) const override {
    Value v = operand->eval(r);
    if (op == "not") return Value::boolean(!r.truth(v, line));
    if (v.is_undefined()) r.undefined_error(v, line);
    if (v.kind == Value::kFloat) return Value::real(op == "-" ? -v.f : v.f);
    if (v.kind == Value::kInt || v.kind == Value::kBool) {
      const int64_t x = v.kind == Value::kInt ? v.i : v.b;
      return Value::integer(op == "-" ? -x : x);
    }
    throw RenderError{"bad operand type for unary " + op + ": '" + kind_name(v) + "'", line};
  }
};

// Limits that keep a hostile template (it ships inside a model folder) from exhausting the stack
// or memory: Python would raise RecursionError / MemoryError there.
constexpr uint64_t kMaxRepeatedSize = uint64_t{1} << 26;  // items (or bytes) a `*` may build
constexpr int kMaxDepth = 200;  // macro calls, and nesting while parsing

int64_t floor_div(int64_t a, int64_t b) {
  int64_t q = a / b;
  if ((a % b != 0) && ((a < 0) != (b < 0))) --q;
  return q;
}

Value arithmetic(const std::string& op, const Value& a, const Value& b, int line) {
  auto type_error = [&]() -> RenderError {
    return RenderError{"unsupported operand type(s) for " + op + ": '" + kind_name(a) + "' and '" + kind_name(b) + "'",
                       line};
  };
  if (op == "+") {
    if (a.kind == Value::kString && b.kind == Value::kString) return Value::string(a.s + b.s);
    if (a.kind == Value::kList && b.kind == Value::kList) {
      List items = *a.list;
      items.insert(items.end(), b.list->begin(), b.list->end());
      return Value::make_list(std::move(items));
    }
  }
  if (op == "*") {  // sequence repetition
    const Value* seq = a.kind == Value::kString || a.kind == Value::kList ? &a : &b;
    const Value* count = seq == &a ? &b : &a;
    if ((seq->kind == Value::kString || seq->kind == Value::kList) &&
        (count->kind == Value::kInt || count->kind == Value::kBool)) {
      const int64_t n = count->kind == Value::kInt ? count->i : count->b;
      const size_t unit = seq->kind == Value::kString ? seq->s.size() : seq->list->size();
      if (n > 0 && unit > 0 && static_cast<uint64_t>(n) > kMaxRepeatedSize / unit)
        throw RenderError{"a repeated sequence over " + std::to_string(kMaxRepeatedSize) + " items", line};
      if (seq->kind == Value::kString) {
        std::string text;
        for (int64_t k = 0; k < n; ++k) text += seq->s;
        return Value::string(text);
      }
      List items;
      for (int64_t k = 0; k < n; ++k) items.insert(items.end(), seq->list->begin(), seq->list->end());
      return Value::make_list(std::move(items));
    }
  }
  if (!a.is_number() || !b.is_number()) throw type_error();
  const bool ints = a.kind != Value::kFloat && b.kind != Value::kFloat;
  const int64_t x = a.kind == Value::kInt ? a.i : a.b, y = b.kind == Value::kInt ? b.i : b.b;
  const double fx = a.number(), fy = b.number();
  // Python's ints have no limit; past int64 this engine says so rather than wrap around.
  auto checked = [&](bool overflowed, int64_t value) {
    if (overflowed) throw RenderError{"integer overflow in " + op + " (beyond 64 bits)", line};
    return Value::integer(value);
  };
  int64_t result = 0;
  if (op == "+") {
    if (!ints) return Value::real(fx + fy);
    const bool overflowed = __builtin_add_overflow(x, y, &result);  // before `result` is read
    return checked(overflowed, result);
  }
  if (op == "-") {
    if (!ints) return Value::real(fx - fy);
    const bool overflowed = __builtin_sub_overflow(x, y, &result);  // before `result` is read
    return checked(overflowed, result);
  }
  if (op == "*") {
    if (!ints) return Value::real(fx * fy);
    const bool overflowed = __builtin_mul_overflow(x, y, &result);  // before `result` is read
    return checked(overflowed, result);
  }
  if (op == "/") {
    if (fy == 0) throw RenderError{"division by zero", line};
    return Value::real(fx / fy);
  }
  if (op == "//" || op == "%") {
    if (fy == 0) throw RenderError{"integer division or modulo by zero", line};
    if (ints) return Value::integer(op == "//" ? floor_div(x, y) : x - floor_div(x, y) * y);
    const double q = std::floor(fx / fy);
    return Value::real(op == "//" ? q : fx - q * fy);
  }
  if (op == "**") {
    if (ints && y >= 0) {  // by squaring: at most 63 steps before an overflow
      int64_t power = 1, base = x;
      for (int64_t e = y; e > 0; e >>= 1) {
        if ((e & 1) && __builtin_mul_overflow(power, base, &power)) return checked(true, 0);
        if (e > 1 && __builtin_mul_overflow(base, base, &base)) return checked(true, 0);
      }
      return Value::integer(power);
    }
    return Value::real(std::pow(fx, fy));
  }
  throw type_error();
}

struct Binary : Expr {
  std::string op;
  ExprPtr left, right;
  Value eval(Renderer& r) const override {
    if (op == "and") {
      Value a = left->eval(r);
      return r.truth(a, line) ? right->eval(r) : a;
    }
    if (op == "or") {
      Value a = left->eval(r);
      return r.truth(a, line) ? a : right->eval(r);
    }
    Value a = left->eval(r), b = right->eval(r);
    if (op == "~") return Value::string(r.str(a, line) + r.str(b, line));
    if (op == "==" || op == "!=") {
      r.check_defined(a, line);
      r.check_defined(b, line);
      return Value::boolean(equals(a, b) == (op == "=="));
    }
    if (op == "in" || op == "not in") {
      if (b.is_undefined()) r.undefined_error(b, line);
      return Value::boolean(contains(r, b, a, line) == (op == "in"));
    }
    if (a.is_undefined()) r.undefined_error(a, line);
    if (b.is_undefined()) r.undefined_error(b, line);
    if (op == "<") return Value::boolean(compare(a, b, line) < 0);
    if (op == ">") return Value::boolean(compare(a, b, line) > 0);
    if (op == "<=") return Value::boolean(compare(a, b, line) <= 0);
    if (op == ">=") return Value::boolean(compare(a, b, line) >= 0);
    return arithmetic(op, a, b, line);
  }
};

struct CondExpr : Expr {
  ExprPtr condition, then_value, else_value;  // else_value may be null: undefined
  Value eval(Renderer& r) const override {
    if (r.truth(condition->eval(r), line)) return then_value->eval(r);
    if (else_value) return else_value->eval(r);
    // jinja2 (since 2.11) gives an else-less inline if the default Undefined even under
    // StrictUndefined, so `{{ 'x' if flag }}` prints nothing rather than failing.
    Value nothing = Value::undefined("else");
    nothing.lenient = true;
    return nothing;
  }
};

// ---------------------------------------------------------------------------------------------
// Statements

struct TextStmt : Stmt {
  std::string text;
  void exec(Renderer& r) const override { r.out += text; }
};

struct OutputStmt : Stmt {
  ExprPtr expr;
  void exec(Renderer& r) const override { r.out += r.str(expr->eval(r), line); }
};

struct IfStmt : Stmt {
  std::vector<std::pair<ExprPtr, Body>> branches;  // if, elif...
  Body otherwise;
  void exec(Renderer& r) const override {
    for (const auto& branch : branches)
      if (r.truth(branch.first->eval(r), branch.first->line)) {
        r.exec(branch.second);
        return;
      }
    r.exec(otherwise);
  }
};

// Binds `targets` (one name, or several unpacked from a sequence) in the innermost scope.
void assign(Renderer& r, const std::vector<std::string>& targets, const Value& value, int line) {
  if (targets.size() == 1) {
    r.scopes.back()[targets[0]] = value;
    return;
  }
  List items = iterate(r, value, line);
  if (items.size() != targets.size())
    throw RenderError{
        "cannot unpack " + std::to_string(items.size()) + " values into " + std::to_string(targets.size()) + " names",
        line};
  for (size_t k = 0; k < targets.size(); ++k) r.scopes.back()[targets[k]] = items[k];
}

struct ForStmt : Stmt {
  std::vector<std::string> targets;
  ExprPtr iterable, filter;  // filter: `for x in xs if cond`, may be null
  Body body, otherwise;
  void exec(Renderer& r) const override {
    const List all = iterate(r, iterable->eval(r), line);
    List items;
    if (filter) {
      // The filter sees each item bound to the loop's names, before loop.* exists.
      for (const auto& item : all) {
        r.scopes.emplace_back();
        assign(r, targets, item, line);
        const bool keep = r.truth(filter->eval(r), line);
        r.scopes.pop_back();
        if (keep) items.push_back(item);
      }
    } else {
      items = all;
    }
    if (items.empty()) {
      r.exec(otherwise);
      return;
    }
    const int64_t n = static_cast<int64_t>(items.size());
    for (int64_t k = 0; k < n; ++k) {
      auto loop = Value::make_dict();
      loop.dict->set("index", Value::integer(k + 1));
      loop.dict->set("index0", Value::integer(k));
      loop.dict->set("revindex", Value::integer(n - k));
      loop.dict->set("revindex0", Value::integer(n - k - 1));
      loop.dict->set("first", Value::boolean(k == 0));
      loop.dict->set("last", Value::boolean(k == n - 1));
      loop.dict->set("length", Value::integer(n));
      loop.dict->set("depth", Value::integer(1));
      loop.dict->set("depth0", Value::integer(0));
      loop.dict->set("previtem", k > 0 ? items[static_cast<size_t>(k - 1)] : Value::undefined("previtem"));
      loop.dict->set("nextitem", k + 1 < n ? items[static_cast<size_t>(k + 1)] : Value::undefined("nextitem"));
      loop.dict->set("cycle", Value::function([k](Args& args) {
                       if (args.positional.empty()) throw RenderError{"no items for cycling given", args.line};
                       return args.positional[static_cast<size_t>(k) % args.positional.size()];
                     }));
      loop.kind = Value::kNamespace;  // attribute access only, like jinja2's LoopContext
      r.scopes.emplace_back();
      r.scopes.back()["loop"] = loop;
      assign(r, targets, items[static_cast<size_t>(k)], line);
      try {
        r.exec(body);
      } catch (const BreakSignal&) {
        r.scopes.pop_back();
        break;
      } catch (const ContinueSignal&) {
      }
      r.scopes.pop_back();
    }
  }
};

struct SetStmt : Stmt {
  std::vector<std::string> targets;  // one name, or a tuple
  std::string namespace_name, attribute;  // `set ns.attr = ...`
  ExprPtr value;
  Body block;  // `{% set x %}...{% endset %}`
  std::unique_ptr<FilterExpr> block_filter;  // `{% set x | filter %}`
  void exec(Renderer& r) const override {
    Value v;
    if (value) {
      v = value->eval(r);
    } else {
      std::string saved;
      std::swap(saved, r.out);
      r.exec(block);
      std::swap(saved, r.out);
      v = Value::string(saved);
      if (block_filter) v = block_filter->apply(r, v);
    }
    if (!namespace_name.empty()) {
      Value ns = r.lookup(namespace_name);
      if (ns.kind != Value::kNamespace) throw RenderError{"cannot assign attribute on non-namespace object", line};
      ns.dict->set(attribute, v);
      return;
    }
    assign(r, targets, v, line);
  }
};

struct MacroStmt : Stmt {
  std::string name;
  std::vector<std::pair<std::string, ExprPtr>> params;  // default may be null
  Body body;
  void exec(Renderer& r) const override {
    const MacroStmt* self = this;
    Renderer* renderer = &r;
    r.scopes.back()[name] = Value::function([self, renderer](Args& args) {
      Renderer& rr = *renderer;
      if (rr.macro_depth >= kMaxDepth)
        throw RenderError{"macro '" + self->name + "' nested deeper than " + std::to_string(kMaxDepth), args.line};
      struct DepthGuard {
        int& depth;
        explicit DepthGuard(int& d) : depth(d) { ++depth; }
        ~DepthGuard() { --depth; }
      } guard(rr.macro_depth);
      std::map<std::string, Value> locals;
      for (size_t k = 0; k < self->params.size(); ++k) {
        const auto& param = self->params[k];
        Value v = args.get(k, param.first);
        if (v.is_undefined() && param.second) v = param.second->eval(rr);
        locals[param.first] = v;
      }
      if (args.positional.size() > self->params.size())
        throw RenderError{
            "macro '" + self->name + "' takes not more than " + std::to_string(self->params.size()) + " argument(s)",
            args.line};
      for (const auto& keyword : args.keywords)
        if (std::none_of(self->params.begin(), self->params.end(),
                         [&](const auto& param) { return param.first == keyword.first; }))
          throw RenderError{"macro '" + self->name + "' takes no keyword argument '" + keyword.first + "'", args.line};
      // A macro sees the template's top level and its own arguments, not its caller's locals.
      std::vector<std::map<std::string, Value>> saved_scopes = {rr.scopes.front(), locals};
      std::swap(saved_scopes, rr.scopes);
      std::string saved_out;
      std::swap(saved_out, rr.out);
      try {
        rr.exec(self->body);
      } catch (...) {
        std::swap(saved_scopes, rr.scopes);
        std::swap(saved_out, rr.out);
        throw;
      }
      std::swap(saved_scopes, rr.scopes);
      std::swap(saved_out, rr.out);
      return Value::string(saved_out);
    });
  }
};

struct BreakStmt : Stmt {
  void exec(Renderer&) const override { throw BreakSignal{}; }
};
struct ContinueStmt : Stmt {
  void exec(Renderer&) const override { throw ContinueSignal{}; }
};

struct GenerationStmt : Stmt {
  Body body;
  void exec(Renderer& r) const override {
    const size_t begin = r.out.size();
    r.exec(body);
    r.spans.emplace_back(begin, r.out.size());
  }
};

struct FilterBlockStmt : Stmt {
  std::unique_ptr<FilterExpr> filter;
  Body body;
  void exec(Renderer& r) const override {
    std::string saved;
    std::swap(saved, r.out);
    r.exec(body);
    std::swap(saved, r.out);
    r.out += r.str(filter->apply(r, Value::string(saved)), line);
  }
};

// ---------------------------------------------------------------------------------------------
// Parser: jinja2's grammar and operator precedence (parser.py), loosest first:
// cond-expr, or, and, not, comparisons / in, + -, ~, * / // %, **, unary - +, then postfix
// (. [] ()) and filters / tests (| is) binding tightest.

class Parser {
 public:
  Parser(std::vector<Piece> pieces, std::string origin, JinjaOptions options)
      : pieces_(std::move(pieces)), origin_(std::move(origin)), options_(options) {}

  Body parse_template() {
    Body body = parse_body({});
    return body;
  }

 private:
  [[noreturn]] void fail(int line, const std::string& what) const {
    throw UserError(origin_ + ":" + std::to_string(line) + ": " + what);
  }

  // --- tokens of the current tag
  const Token& peek(size_t ahead = 0) const {
    static const Token end{Token::kEnd, "", 0, 0, 0};
    return pos_ + ahead < tokens_->size() ? (*tokens_)[pos_ + ahead] : end;
  }
  const Token& next() {
    const Token& t = peek();
    if (t.kind == Token::kEnd) fail(line_, "unexpected end of tag");
    ++pos_;
    return t;
  }
  bool is_op(const std::string& op, size_t ahead = 0) const {
    return peek(ahead).kind == Token::kOperator && peek(ahead).text == op;
  }
  bool is_name(const std::string& name, size_t ahead = 0) const {
    return peek(ahead).kind == Token::kName && peek(ahead).text == name;
  }
  bool accept_op(const std::string& op) {
    if (!is_op(op)) return false;
    ++pos_;
    return true;
  }
  bool accept_name(const std::string& name) {
    if (!is_name(name)) return false;
    ++pos_;
    return true;
  }
  void expect_op(const std::string& op) {
    if (!accept_op(op)) fail(peek().line ? peek().line : line_, "expected '" + op + "', got " + describe(peek()));
  }
  std::string expect_name() {
    if (peek().kind != Token::kName) fail(line_, "expected a name, got " + describe(peek()));
    return next().text;
  }
  void expect_end() {
    if (peek().kind != Token::kEnd) fail(peek().line, "unexpected " + describe(peek()) + " in tag");
  }
  static std::string describe(const Token& t) {
    switch (t.kind) {
      case Token::kEnd:
        return "end of tag";
      case Token::kString:
        return "string";
      default:
        return "'" + t.text + "'";
    }
  }
  template <class T>
  std::unique_ptr<T> node() {
    auto n = std::make_unique<T>();
    n->line = peek().kind == Token::kEnd ? line_ : peek().line;
    return n;
  }

  // --- statements
  // Parses pieces until a block tag whose name is in `ends`; leaves that tag current (pos_ after its name).
  Body parse_body(const std::set<std::string>& ends) {
    Body body;
    while (index_ < pieces_.size()) {
      const Piece& piece = pieces_[index_];
      line_ = piece.line;
      if (piece.kind == Piece::kText) {
        auto text = std::make_unique<TextStmt>();
        text->line = piece.line;
        text->text = piece.text;
        body.push_back(std::move(text));
        ++index_;
        continue;
      }
      tokens_ = &piece.tokens;
      pos_ = 0;
      if (piece.kind == Piece::kOutput) {
        auto out = std::make_unique<OutputStmt>();
        out->line = piece.line;
        out->expr = parse_tuple_or_expression();
        expect_end();
        body.push_back(std::move(out));
        ++index_;
        continue;
      }
      const std::string tag = peek().kind == Token::kName ? peek().text : "";
      if (ends.count(tag)) return body;  // the caller consumes it
      ++index_;
      ++pos_;
      body.push_back(parse_statement(tag, piece.line));
    }
    if (!ends.empty()) {
      // Name the closing tag ({% endif %}), not the elif / else that could also have come.
      std::string closer = *ends.begin();
      for (const auto& e : ends)
        if (e.rfind("end", 0) == 0) closer = e;
      fail(line_, "template ended before {% " + closer + " %}");
    }
    return body;
  }

  // Moves past the end tag parse_body stopped at; returns its name.
  std::string take_end_tag() {
    const Piece& piece = pieces_[index_];
    tokens_ = &piece.tokens;
    line_ = piece.line;
    pos_ = 1;
    ++index_;
    return piece.tokens[0].text;
  }

  // The current tag ends here; its body runs to {% <end> %}, which must hold nothing else.
  Body parse_block(const std::string& end) {
    expect_end();
    Body body = parse_body({end});
    take_end_tag();
    if (end == "endmacro" && peek().kind == Token::kName) ++pos_;  // {% endmacro name %}
    expect_end();
    return body;
  }

  StmtPtr parse_statement(const std::string& tag, int line) {
    enter(line);
    struct Leave {
      int& depth;
      ~Leave() { --depth; }
    } leave{depth_};
    if (tag == "if") {
      auto stmt = std::make_unique<IfStmt>();
      stmt->line = line;
      ExprPtr condition = parse_expression();
      expect_end();
      while (true) {
        Body branch = parse_body({"elif", "else", "endif"});
        stmt->branches.emplace_back(std::move(condition), std::move(branch));
        const std::string end = take_end_tag();
        if (end == "elif") {
          condition = parse_expression();
          expect_end();
          continue;
        }
        if (end == "else")
          stmt->otherwise = parse_block("endif");
        else
          expect_end();
        return stmt;
      }
    }
    if (tag == "for") {
      auto stmt = std::make_unique<ForStmt>();
      stmt->line = line;
      stmt->targets = parse_target_names();
      if (!accept_name("in")) fail(line, "expected 'in' in for loop");
      stmt->iterable = parse_tuple_or_expression(/*with_condexpr=*/false);
      if (accept_name("if")) stmt->filter = parse_expression();
      if (is_name("recursive")) fail(line, "recursive for loops are not supported");
      expect_end();
      stmt->body = parse_body({"else", "endfor"});
      if (take_end_tag() == "else")
        stmt->otherwise = parse_block("endfor");
      else
        expect_end();
      return stmt;
    }
    if (tag == "set") {
      auto stmt = std::make_unique<SetStmt>();
      stmt->line = line;
      if (peek().kind == Token::kName && is_op(".", 1)) {
        stmt->namespace_name = next().text;
        ++pos_;
        stmt->attribute = expect_name();
      } else {
        stmt->targets = parse_target_names();
      }
      if (accept_op("=")) {
        stmt->value = parse_tuple_or_expression();
        expect_end();
        return stmt;
      }
      if (accept_op("|")) stmt->block_filter = parse_filter(nullptr);
      stmt->block = parse_block("endset");
      return stmt;
    }
    if (tag == "macro") {
      auto stmt = std::make_unique<MacroStmt>();
      stmt->line = line;
      stmt->name = expect_name();
      expect_op("(");
      while (!accept_op(")")) {
        if (!stmt->params.empty()) expect_op(",");
        if (accept_op(")")) break;
        std::string param = expect_name();
        ExprPtr fallback;
        if (accept_op("=")) fallback = parse_expression();
        stmt->params.emplace_back(param, std::move(fallback));
      }
      stmt->body = parse_block("endmacro");
      return stmt;
    }
    if (tag == "generation") {
      auto stmt = std::make_unique<GenerationStmt>();
      stmt->line = line;
      stmt->body = parse_block("endgeneration");
      return stmt;
    }
    if (tag == "filter") {
      auto stmt = std::make_unique<FilterBlockStmt>();
      stmt->line = line;
      stmt->filter = parse_filter(nullptr);
      stmt->body = parse_block("endfilter");
      return stmt;
    }
    if (tag == "raw") {  // the lexer put the raw text next, then {% endraw %}
      Body body = parse_block("endraw");
      auto stmt = std::make_unique<IfStmt>();  // a plain container: always-true branch
      auto yes = std::make_unique<Literal>();
      yes->value = Value::boolean(true);
      stmt->branches.emplace_back(std::move(yes), std::move(body));
      return stmt;
    }
    if (tag == "break" || tag == "continue") {
      expect_end();
      StmtPtr stmt = tag == "break" ? StmtPtr(new BreakStmt) : StmtPtr(new ContinueStmt);
      stmt->line = line;
      return stmt;
    }
    if (tag.empty()) fail(line, "a block tag must start with a name");
    fail(line, "unsupported tag '" + tag + "' (posttrain's Jinja has if, for, set, macro, filter, raw, break, " +
                   "continue, generation)");
  }

  std::vector<std::string> parse_target_names() {
    std::vector<std::string> names;
    const bool parens = accept_op("(");
    do {
      names.push_back(expect_name());
    } while (accept_op(","));
    if (parens) expect_op(")");
    return names;
  }

  // --- expressions
  // `a, b` makes a tuple (a list here) where jinja2 allows one: output tags, set, for's iterable.
  ExprPtr parse_tuple_or_expression(bool with_condexpr = true) {
    const int line = peek().line;
    ExprPtr first = with_condexpr ? parse_expression() : parse_or();
    if (!is_op(",")) return first;
    auto tuple = std::make_unique<ListExpr>();
    tuple->line = line;
    tuple->items.push_back(std::move(first));
    while (accept_op(",")) {
      if (peek().kind == Token::kEnd || is_name("if")) break;
      tuple->items.push_back(with_condexpr ? parse_expression() : parse_or());
    }
    return tuple;
  }

  ExprPtr parse_expression() {
    ExprPtr value = parse_or();
    while (accept_name("if")) {
      auto cond = node<CondExpr>();
      cond->then_value = std::move(value);
      cond->condition = parse_or();
      if (accept_name("else")) cond->else_value = parse_expression();
      value = std::move(cond);
    }
    return value;
  }

  ExprPtr binary(const std::string& op, ExprPtr left, ExprPtr right, int line) {
    auto b = std::make_unique<Binary>();
    b->line = line;
    b->op = op;
    b->left = std::move(left);
    b->right = std::move(right);
    return b;
  }

  using Level = ExprPtr (Parser::*)();

  // One left-associative precedence level: operand (op operand)*. `keywords`: the operators are
  // names (and, or) rather than symbols.
  ExprPtr left_assoc(Level operand, std::initializer_list<const char*> ops, bool keywords) {
    ExprPtr left = (this->*operand)();
    while (true) {
      const char* matched = nullptr;
      for (const char* op : ops)
        if (keywords ? is_name(op) : is_op(op)) matched = op;
      if (matched == nullptr) return left;
      const int line = next().line;
      left = binary(matched, std::move(left), (this->*operand)(), line);
    }
  }

  ExprPtr parse_or() { return left_assoc(&Parser::parse_and, {"or"}, true); }
  ExprPtr parse_and() { return left_assoc(&Parser::parse_not, {"and"}, true); }

  ExprPtr parse_not() {
    if (is_name("not")) {
      auto u = node<Unary>();
      ++pos_;
      u->op = "not";
      u->operand = parse_not();
      return u;
    }
    return parse_compare();
  }

  // a < b < c is (a < b) and (b < c), as in Python (b evaluated twice here: no side effects exist).
  ExprPtr parse_compare() {
    ExprPtr left = parse_math1();
    ExprPtr result;
    while (true) {
      std::string op;
      const int line = peek().line;
      if (peek().kind == Token::kOperator && (peek().text == "==" || peek().text == "!=" || peek().text == "<" ||
                                              peek().text == ">" || peek().text == "<=" || peek().text == ">=")) {
        op = next().text;
      } else if (is_name("in")) {
        ++pos_;
        op = "in";
      } else if (is_name("not") && is_name("in", 1)) {
        pos_ += 2;
        op = "not in";
      } else {
        break;
      }
      const size_t right_start = pos_;
      ExprPtr right = parse_math1();
      ExprPtr comparison = binary(op, std::move(left), std::move(right), line);
      result = result ? binary("and", std::move(result), std::move(comparison), line) : std::move(comparison);
      const size_t right_end = pos_;
      pos_ = right_start;  // re-parse the right operand as the next comparison's left
      left = parse_math1();
      pos_ = right_end;
    }
    return result ? std::move(result) : std::move(left);
  }

  ExprPtr parse_math1() { return left_assoc(&Parser::parse_concat, {"+", "-"}, false); }
  ExprPtr parse_concat() { return left_assoc(&Parser::parse_math2, {"~"}, false); }
  ExprPtr parse_math2() { return left_assoc(&Parser::parse_pow, {"*", "/", "//", "%"}, false); }
  ExprPtr parse_pow() { return left_assoc(&Parser::parse_filtered_unary, {"**"}, false); }  // left-assoc in jinja2
  ExprPtr parse_filtered_unary() { return parse_unary(true); }

  // Every operand passes through here, and every nested statement through parse_statement.
  void enter(int line) {
    if (++depth_ > kMaxDepth) fail(line, "nested deeper than " + std::to_string(kMaxDepth) + " levels");
  }

  ExprPtr parse_unary(bool with_filter) {
    enter(peek().line ? peek().line : line_);
    struct Leave {
      int& depth;
      ~Leave() { --depth; }
    } leave{depth_};
    ExprPtr value;
    if (is_op("-") || is_op("+")) {
      auto u = node<Unary>();
      u->op = next().text;
      u->operand = parse_unary(false);
      value = std::move(u);
    } else {
      value = parse_postfix(parse_primary());
    }
    return with_filter ? parse_filter_expr(std::move(value)) : std::move(value);
  }

  ExprPtr parse_primary() {
    const Token& t = peek();
    const int line = t.line;
    if (t.kind == Token::kName) {
      ++pos_;
      auto lit = std::make_unique<Literal>();
      lit->line = line;
      if (t.text == "true" || t.text == "True")
        lit->value = Value::boolean(true);
      else if (t.text == "false" || t.text == "False")
        lit->value = Value::boolean(false);
      else if (t.text == "none" || t.text == "None")
        lit->value = Value::none();
      else {
        auto name = std::make_unique<Name>();
        name->line = line;
        name->name = t.text;
        return name;
      }
      return lit;
    }
    if (t.kind == Token::kString) {
      auto lit = std::make_unique<Literal>();
      lit->line = line;
      std::string text;
      while (peek().kind == Token::kString) text += next().text;  // adjacent literals concatenate
      lit->value = Value::string(text);
      return lit;
    }
    if (t.kind == Token::kInt || t.kind == Token::kFloat) {
      ++pos_;
      auto lit = std::make_unique<Literal>();
      lit->line = line;
      lit->value = t.kind == Token::kInt ? Value::integer(t.i) : Value::real(t.f);
      return lit;
    }
    if (accept_op("(")) {
      if (accept_op(")")) {  // empty tuple
        auto tuple = std::make_unique<ListExpr>();
        tuple->line = line;
        return tuple;
      }
      ExprPtr inner = parse_tuple_or_expression();
      expect_op(")");
      return inner;
    }
    if (accept_op("[")) {
      auto list = std::make_unique<ListExpr>();
      list->line = line;
      while (!accept_op("]")) {
        if (!list->items.empty()) expect_op(",");
        if (accept_op("]")) break;
        list->items.push_back(parse_expression());
      }
      return list;
    }
    if (accept_op("{")) {
      auto dict = std::make_unique<DictExpr>();
      dict->line = line;
      while (!accept_op("}")) {
        if (!dict->items.empty()) expect_op(",");
        if (accept_op("}")) break;
        ExprPtr key = parse_expression();
        expect_op(":");
        dict->items.emplace_back(std::move(key), parse_expression());
      }
      return dict;
    }
    fail(line ? line : line_, "unexpected " + describe(t));
  }

  ExprPtr parse_postfix(ExprPtr value) {
    while (true) {
      const int line = peek().line;
      if (accept_op(".")) {
        if (peek().kind == Token::kInt) {  // foo.0 is foo[0]
          auto item = std::make_unique<GetItem>();
          item->line = line;
          item->object = std::move(value);
          auto key = std::make_unique<Literal>();
          key->value = Value::integer(next().i);
          item->key = std::move(key);
          value = std::move(item);
        } else {
          auto attr = std::make_unique<GetAttr>();
          attr->line = line;
          attr->object = std::move(value);
          attr->name = expect_name();
          value = std::move(attr);
        }
      } else if (accept_op("[")) {
        ExprPtr start, stop, step;
        bool is_slice = false;
        if (!is_op(":")) start = parse_expression();
        if (accept_op(":")) {
          is_slice = true;
          if (!is_op("]") && !is_op(":")) stop = parse_expression();
          if (accept_op(":") && !is_op("]")) step = parse_expression();
        }
        expect_op("]");
        if (is_slice) {
          auto s = std::make_unique<Slice>();
          s->line = line;
          s->object = std::move(value);
          s->start = std::move(start);
          s->stop = std::move(stop);
          s->step = std::move(step);
          value = std::move(s);
        } else {
          auto item = std::make_unique<GetItem>();
          item->line = line;
          item->object = std::move(value);
          item->key = std::move(start);
          value = std::move(item);
        }
      } else if (is_op("(")) {
        auto call = std::make_unique<Call>();
        call->line = line;
        call->callee = std::move(value);
        call->args = parse_call_args();
        value = std::move(call);
      } else {
        return value;
      }
    }
  }

  CallArgs parse_call_args() {
    CallArgs args;
    expect_op("(");
    bool first = true;
    while (!accept_op(")")) {
      if (!first) expect_op(",");
      first = false;
      if (accept_op(")")) break;
      if (is_op("*") || is_op("**")) fail(peek().line, "*args / **kwargs in calls are not supported");
      if (peek().kind == Token::kName && is_op("=", 1)) {
        std::string name = next().text;
        ++pos_;
        args.keywords.emplace_back(name, parse_expression());
      } else {
        if (!args.keywords.empty()) fail(peek().line, "positional argument after a keyword argument");
        args.positional.push_back(parse_expression());
      }
    }
    return args;
  }

  std::unique_ptr<FilterExpr> parse_filter(ExprPtr input) {
    auto filter = node<FilterExpr>();
    filter->input = std::move(input);
    filter->name = expect_name();
    while (accept_op(".")) filter->name += "." + expect_name();
    auto found = filters().find(filter->name);
    if (found == filters().end() || (filter->name == "regex_replace" && !options_.regex_replace_filter))
      fail(filter->line, "no filter named '" + filter->name + "'");
    filter->fn = found->second;
    if (is_op("(")) filter->args = parse_call_args();
    check_filter_arguments(*filter);
    return filter;
  }

  // jinja2 raises on an argument a filter does not take; a typo such as tojson(indnt=2) must not
  // be dropped silently here either. Each filter's parameters, in positional order (parameters of
  // jinja2's that this engine does not implement are left out, so using them is an error).
  void check_filter_arguments(const FilterExpr& filter) const {
    static const std::map<std::string, std::vector<std::string>> parameters = {
        {"default", {"default_value", "boolean"}},
        {"d", {"default_value", "boolean"}},
        {"dictsort", {"case_sensitive", "by", "reverse"}},
        {"float", {"default"}},
        {"int", {"default", "base"}},
        {"indent", {"width", "first", "blank"}},
        {"join", {"d", "attribute"}},
        {"max", {"case_sensitive"}},
        {"min", {"case_sensitive"}},
        {"regex_replace", {"pattern", "repl", "count"}},
        {"replace", {"old", "new", "count"}},
        {"round", {"precision", "method"}},
        {"sort", {"reverse", "case_sensitive", "attribute"}},
        {"sum", {"attribute", "start"}},
        {"tojson", {"indent", "ensure_ascii", "separators", "sort_keys"}},
        {"trim", {"chars"}},
        {"unique", {"case_sensitive", "attribute"}},
    };
    // map, select, reject, selectattr and rejectattr pass their extra arguments on to a filter or test.
    static const std::set<std::string> variadic = {"map", "select", "reject", "selectattr", "rejectattr"};
    if (variadic.count(filter.name)) {
      for (const auto& keyword : filter.args.keywords)
        if (filter.name != "map" || (keyword.first != "attribute" && keyword.first != "default"))
          fail(filter.line, "filter '" + filter.name + "' takes no keyword argument '" + keyword.first + "'");
      return;
    }
    auto found = parameters.find(filter.name);
    const std::vector<std::string> none;
    const auto& names = found == parameters.end() ? none : found->second;
    if (filter.args.positional.size() > names.size())
      fail(filter.line, "filter '" + filter.name + "' takes at most " + std::to_string(names.size()) + " argument(s)");
    for (const auto& keyword : filter.args.keywords)
      if (std::find(names.begin(), names.end(), keyword.first) == names.end())
        fail(filter.line, "filter '" + filter.name + "' takes no keyword argument '" + keyword.first + "'");
  }

  ExprPtr parse_filter_expr(ExprPtr value) {
    while (true) {
      if (accept_op("|")) {
        value = parse_filter(std::move(value));
      } else if (is_name("is")) {
        auto test = node<TestExpr>();
        ++pos_;
        test->negated = accept_name("not");
        test->name = expect_name();
        auto found = tests().find(test->name);
        if (found == tests().end()) fail(test->line, "no test named '" + test->name + "'");
        test->fn = found->second;
        test->input = std::move(value);
        if (is_op("(")) {
          test->args = parse_call_args();
        } else if ((peek().kind == Token::kName || peek().kind == Token::kString || peek().kind == Token::kInt ||
                    peek().kind == Token::kFloat || is_op("(") || is_op("[") || is_op("{")) &&
                   !is_name("else") && !is_name("or") && !is_name("and")) {
          test->args.positional.push_back(parse_postfix(parse_primary()));  // `is divisibleby 3`
        }
        value = std::move(test);
      } else if (is_op("(")) {
        auto call = node<Call>();
        call->callee = std::move(value);
        call->args = parse_call_args();
        value = std::move(call);
      } else {
        return value;
      }
    }
  }

  std::vector<Piece> pieces_;
  std::string origin_;
  JinjaOptions options_;
  size_t index_ = 0;
  const std::vector<Token>* tokens_ = nullptr;
  size_t pos_ = 0;
  int line_ = 1;
  int depth_ = 0;  // parse_unary / parse_statement frames open
};

// ---------------------------------------------------------------------------------------------
// Python's str methods, the dict methods templates call, filters, tests, globals.

// str.lower() / upper() with Unicode's simple case mappings (utf8proc). Python applies the full
// mappings, which differ for a handful of characters (German sharp s upper-cases to "SS" there).
std::string map_case(const std::string& s, utf8proc_int32_t (*mapping)(utf8proc_int32_t)) {
  std::string out;
  for (char32_t c : decode_utf8(s)) append_utf8(out, static_cast<char32_t>(mapping(static_cast<utf8proc_int32_t>(c))));
  return out;
}
std::string ascii_lower(const std::string& s) { return map_case(s, utf8proc_tolower); }
std::string ascii_upper(const std::string& s) { return map_case(s, utf8proc_toupper); }

bool is_cased(char32_t c) {
  const auto category = utf8proc_category(static_cast<utf8proc_int32_t>(c));
  return category == UTF8PROC_CATEGORY_LU || category == UTF8PROC_CATEGORY_LL || category == UTF8PROC_CATEGORY_LT;
}
// Python's \w: letters, numbers and the underscore.
bool is_word_char(char32_t c) {
  const auto category = utf8proc_category(static_cast<utf8proc_int32_t>(c));
  return c == '_' || (category >= UTF8PROC_CATEGORY_LU && category <= UTF8PROC_CATEGORY_LO) ||
         (category >= UTF8PROC_CATEGORY_ND && category <= UTF8PROC_CATEGORY_NO);
}

// str.strip / lstrip / rstrip: whitespace, or any of `chars`.
std::string strip(const std::string& s, const Value& chars, bool left, bool right) {
  const auto cps = decode_utf8(s);
  std::vector<char32_t> set;
  const bool whitespace = chars.is_undefined() || chars.kind == Value::kNone;
  if (!whitespace) set = decode_utf8(chars.s);
  auto strippable = [&](char32_t c) {
    return whitespace ? is_python_space(c) : std::find(set.begin(), set.end(), c) != set.end();
  };
  size_t begin = 0, end = cps.size();
  if (left)
    while (begin < end && strippable(cps[begin])) ++begin;
  if (right)
    while (end > begin && strippable(cps[end - 1])) --end;
  return encode_utf8(cps, begin, end);
}

// str.split(sep=None, maxsplit=-1) and rsplit.
List split(const std::string& s, const Value& sep, int64_t maxsplit, bool from_right, int line) {
  List parts;
  if (sep.is_undefined() || sep.kind == Value::kNone) {  // runs of whitespace; no empty parts
    const auto cps = decode_utf8(s);
    std::vector<std::pair<size_t, size_t>> words;
    size_t k = 0;
    while (k < cps.size()) {
      while (k < cps.size() && is_python_space(cps[k])) ++k;
      if (k == cps.size()) break;
      size_t start = k;
      while (k < cps.size() && !is_python_space(cps[k])) ++k;
      words.emplace_back(start, k);
    }
    if (maxsplit >= 0 && static_cast<int64_t>(words.size()) > maxsplit + 1) {
      // The unsplit remainder keeps its inner whitespace (trailing whitespace stripped).
      if (!from_right) {
        for (int64_t w = 0; w < maxsplit; ++w)
          parts.push_back(Value::string(encode_utf8(cps, words[w].first, words[w].second)));
        parts.push_back(
            Value::string(encode_utf8(cps, words[static_cast<size_t>(maxsplit)].first, words.back().second)));
      } else {
        const size_t keep = words.size() - static_cast<size_t>(maxsplit);
        parts.push_back(Value::string(encode_utf8(cps, words.front().first, words[keep - 1].second)));
        for (size_t w = keep; w < words.size(); ++w)
          parts.push_back(Value::string(encode_utf8(cps, words[w].first, words[w].second)));
      }
      return parts;
    }
    for (const auto& w : words) parts.push_back(Value::string(encode_utf8(cps, w.first, w.second)));
    return parts;
  }
  if (sep.kind != Value::kString) throw RenderError{"must be str or None", line};
  if (sep.s.empty()) throw RenderError{"empty separator", line};
  std::vector<std::string> pieces;
  if (!from_right) {
    size_t start = 0;
    int64_t splits = 0;
    while (maxsplit < 0 || splits < maxsplit) {
      const size_t found = s.find(sep.s, start);
      if (found == std::string::npos) break;
      pieces.push_back(s.substr(start, found - start));
      start = found + sep.s.size();
      ++splits;
    }
    pieces.push_back(s.substr(start));
  } else {
    size_t end = s.size();
    int64_t splits = 0;
    std::vector<std::string> reversed;
    while (maxsplit < 0 || splits < maxsplit) {
      if (end < sep.s.size()) break;
      const size_t found = s.rfind(sep.s, end - sep.s.size());
      if (found == std::string::npos) break;
      reversed.push_back(s.substr(found + sep.s.size(), end - found - sep.s.size()));
      end = found;
      ++splits;
    }
    reversed.push_back(s.substr(0, end));
    pieces.assign(reversed.rbegin(), reversed.rend());
  }
  for (auto& p : pieces) parts.push_back(Value::string(p));
  return parts;
}

std::string replace_all(const std::string& s, const std::string& old, const std::string& with, int64_t count) {
  if (old.empty()) {  // Python inserts `with` between characters (and at both ends)
    const auto cps = decode_utf8(s);
    std::string out;
    int64_t done = 0;
    for (size_t k = 0; k <= cps.size(); ++k) {
      if (count < 0 || done < count) {
        out += with;
        ++done;
      }
      if (k < cps.size()) append_utf8(out, cps[k]);
    }
    return out;
  }
  std::string out;
  size_t start = 0;
  int64_t done = 0;
  while (count < 0 || done < count) {
    const size_t found = s.find(old, start);
    if (found == std::string::npos) break;
    out += s.substr(start, found - start) + with;
    start = found + old.size();
    ++done;
  }
  return out + s.substr(start);
}

// str.title(): a cased character after an uncased one starts a word.
std::string python_title(const std::string& s) {
  std::string out;
  bool previous_cased = false;
  for (char32_t c : decode_utf8(s)) {
    const auto cp = static_cast<utf8proc_int32_t>(c);
    append_utf8(out, static_cast<char32_t>(previous_cased ? utf8proc_tolower(cp) : utf8proc_totitle(cp)));
    previous_cased = is_cased(c);
  }
  return out;
}
// jinja2's title filter (not str.title): split at runs of "-", whitespace, "(", "{", "[", "<"; each
// piece's first character upper-cased and the rest lower-cased.
std::string jinja_title(const std::string& s) {
  std::string out;
  bool piece_start = true;
  for (char32_t c : decode_utf8(s)) {
    const bool separator = c == '-' || c == '(' || c == '{' || c == '[' || c == '<' || is_python_space(c);
    const auto cp = static_cast<utf8proc_int32_t>(c);
    append_utf8(out, static_cast<char32_t>(piece_start ? utf8proc_toupper(cp) : utf8proc_tolower(cp)));
    piece_start = separator;
  }
  return out;
}
// str.capitalize(): the first character in title case, the rest lower.
std::string python_capitalize(const std::string& s) {
  std::string out;
  bool first = true;
  for (char32_t c : decode_utf8(s)) {
    const auto cp = static_cast<utf8proc_int32_t>(c);
    append_utf8(out, static_cast<char32_t>(first ? utf8proc_totitle(cp) : utf8proc_tolower(cp)));
    first = false;
  }
  return out;
}

std::string expect_string(const Value& v, const char* what, int line) {
  if (v.kind != Value::kString) throw RenderError{std::string(what) + " expects a string, got " + kind_name(v), line};
  return v.s;
}

// startswith / endswith accept a string or a tuple of strings.
bool affix_match(const std::string& s, const Value& affix, bool prefix, int line) {
  if (affix.kind == Value::kList) {
    for (const auto& a : *affix.list)
      if (affix_match(s, a, prefix, line)) return true;
    return false;
  }
  const std::string a = expect_string(affix, prefix ? "startswith" : "endswith", line);
  if (a.size() > s.size()) return false;
  return prefix ? s.compare(0, a.size(), a) == 0 : s.compare(s.size() - a.size(), a.size(), a) == 0;
}

int64_t int_arg(const Value& v, int64_t fallback, int line) {
  if (v.is_undefined() || v.kind == Value::kNone) return fallback;
  if (v.kind == Value::kInt) return v.i;
  if (v.kind == Value::kBool) return v.b;
  throw RenderError{std::string("expected an integer, got ") + kind_name(v), line};
}

Value string_method(const std::string& self, const std::string& name, int line) {
  using Method = Value (*)(const std::string&, Args&);
  static const std::map<std::string, Method> methods = {
      {"startswith",
       [](const std::string& s, Args& a) { return Value::boolean(affix_match(s, a.get(0, "prefix"), true, a.line)); }},
      {"endswith",
       [](const std::string& s, Args& a) { return Value::boolean(affix_match(s, a.get(0, "suffix"), false, a.line)); }},
      {"strip", [](const std::string& s, Args& a) { return Value::string(strip(s, a.get(0, "chars"), true, true)); }},
      {"lstrip", [](const std::string& s, Args& a) { return Value::string(strip(s, a.get(0, "chars"), true, false)); }},
      {"rstrip", [](const std::string& s, Args& a) { return Value::string(strip(s, a.get(0, "chars"), false, true)); }},
      {"split",
       [](const std::string& s, Args& a) {
         return Value::make_list(split(s, a.get(0, "sep"), int_arg(a.get(1, "maxsplit"), -1, a.line), false, a.line));
       }},
      {"rsplit",
       [](const std::string& s, Args& a) {
         return Value::make_list(split(s, a.get(0, "sep"), int_arg(a.get(1, "maxsplit"), -1, a.line), true, a.line));
       }},
      {"splitlines",
       [](const std::string& s, Args&) {
         List lines;
         size_t start = 0;
         for (size_t k = 0; k < s.size(); ++k)
           if (s[k] == '\n' || s[k] == '\r') {
             lines.push_back(Value::string(s.substr(start, k - start)));
             if (s[k] == '\r' && k + 1 < s.size() && s[k + 1] == '\n') ++k;
             start = k + 1;
           }
         if (start < s.size()) lines.push_back(Value::string(s.substr(start)));
         return Value::make_list(std::move(lines));
       }},
      {"upper", [](const std::string& s, Args&) { return Value::string(ascii_upper(s)); }},
      {"lower", [](const std::string& s, Args&) { return Value::string(ascii_lower(s)); }},
      {"title", [](const std::string& s, Args&) { return Value::string(python_title(s)); }},
      {"capitalize", [](const std::string& s, Args&) { return Value::string(python_capitalize(s)); }},
      {"replace",
       [](const std::string& s, Args& a) {
         return Value::string(replace_all(s, expect_string(a.get(0, "old"), "replace", a.line),
                                          expect_string(a.get(1, "new"), "replace", a.line),
                                          int_arg(a.get(2, "count"), -1, a.line)));
       }},
      {"find",
       [](const std::string& s, Args& a) {
         const size_t found = s.find(expect_string(a.get(0, "sub"), "find", a.line));
         return Value::integer(
             found == std::string::npos ? -1 : static_cast<int64_t>(decode_utf8(s.substr(0, found)).size()));
       }},
      {"rfind",
       [](const std::string& s, Args& a) {
         const size_t found = s.rfind(expect_string(a.get(0, "sub"), "rfind", a.line));
         return Value::integer(
             found == std::string::npos ? -1 : static_cast<int64_t>(decode_utf8(s.substr(0, found)).size()));
       }},
      {"count",
       [](const std::string& s, Args& a) {
         const std::string sub = expect_string(a.get(0, "sub"), "count", a.line);
         if (sub.empty()) return Value::integer(static_cast<int64_t>(decode_utf8(s).size()) + 1);
         int64_t n = 0;
         for (size_t k = s.find(sub); k != std::string::npos; k = s.find(sub, k + sub.size())) ++n;
         return Value::integer(n);
       }},
      {"join",
       [](const std::string& s, Args& a) {
         std::string out;
         const Value items = a.get(0, "iterable");
         if (items.kind != Value::kList) throw RenderError{"join expects a list", a.line};
         for (size_t k = 0; k < items.list->size(); ++k)
           out += (k ? s : "") + expect_string((*items.list)[k], "join", a.line);
         return Value::string(out);
       }},
      {"isdigit",
       [](const std::string& s, Args&) {
         return Value::boolean(!s.empty() &&
                               std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; }));
       }},
      {"isspace",
       [](const std::string& s, Args&) {
         const auto cps = decode_utf8(s);
         return Value::boolean(!cps.empty() && std::all_of(cps.begin(), cps.end(), is_python_space));
       }},
  };
  auto found = methods.find(name);
  if (found == methods.end()) throw RenderError{"str has no method '" + name + "' here", line};
  Method method = found->second;
  return Value::function([method, self](Args& args) { return method(self, args); });
}

Value dict_method(const Value& self, const std::string& name, int line) {
  (void)line;
  auto d = self.dict;
  if (name == "items")
    return Value::function([d](Args&) {
      List items;
      for (const auto& item : d->items) items.push_back(Value::make_list({Value::string(item.first), item.second}));
      return Value::make_list(std::move(items));
    });
  if (name == "keys")
    return Value::function([d](Args&) {
      List keys;
      for (const auto& item : d->items) keys.push_back(Value::string(item.first));
      return Value::make_list(std::move(keys));
    });
  if (name == "values")
    return Value::function([d](Args&) {
      List values;
      for (const auto& item : d->items) values.push_back(item.second);
      return Value::make_list(std::move(values));
    });
  if (name == "get")
    return Value::function([d](Args& args) {
      const Value key = args.get(0, "key");
      const Value* found = key.kind == Value::kString ? d->find(key.s) : nullptr;
      return found ? *found : args.get(1, "default", Value::none());
    });
  return Value::undefined(name);
}

// Attribute path "a.b" (or an integer index) on an item, as jinja2's make_attrgetter.
Value attribute_path(Renderer& r, const Value& item, const Value& attribute, int line) {
  if (attribute.kind == Value::kInt) return get_item(r, item, attribute, line);
  Value v = item;
  for (const auto& part : split(expect_string(attribute, "attribute", line), Value::string("."), -1, false, line)) {
    const bool digits = !part.s.empty() && std::all_of(part.s.begin(), part.s.end(), ::isdigit);
    v = digits ? get_item(r, v, Value::integer(std::stoll(part.s)), line) : get_item(r, v, part, line);
  }
  return v;
}

Value sort_key(const Value& v, bool case_sensitive) {
  return !case_sensitive && v.kind == Value::kString ? Value::string(ascii_lower(v.s)) : v;
}

std::string indent_text(const std::string& text, const std::string& pad, bool first, bool blank) {
  std::vector<std::string> lines;
  size_t start = 0;
  const std::string s = text + "\n";
  for (size_t k = 0; k < s.size(); ++k)
    if (s[k] == '\n') {
      lines.push_back(s.substr(start, k - start));
      start = k + 1;
    }
  std::string out = lines.empty() ? "" : lines[0];
  for (size_t k = 1; k < lines.size(); ++k) out += "\n" + ((blank || !lines[k].empty()) ? pad + lines[k] : lines[k]);
  return first ? pad + out : out;
}

Value select_items(Renderer& r, const Value& input, Args& args, bool by_attribute, bool keep_matching) {
  List out;
  const size_t first_test_arg = by_attribute ? 1 : 0;
  for (const auto& item : iterate(r, input, args.line)) {
    Value subject = by_attribute ? attribute_path(r, item, args.get(0, "attribute"), args.line) : item;
    bool match;
    if (args.positional.size() <= first_test_arg) {
      match = truthy(subject);
    } else {
      const std::string test_name = expect_string(args.positional[first_test_arg], "select", args.line);
      auto test = tests().find(test_name);
      if (test == tests().end()) throw RenderError{"no test named '" + test_name + "'", args.line};
      Args test_args;
      test_args.line = args.line;
      test_args.positional.assign(args.positional.begin() + static_cast<long>(first_test_arg) + 1,
                                  args.positional.end());
      match = test->second(r, subject, test_args);
    }
    if (match == keep_matching) out.push_back(item);
  }
  return Value::make_list(std::move(out));
}

std::string html_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&#34;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

Value python_round(double x, int64_t precision, const std::string& method, int line) {
  const double scale = std::pow(10.0, static_cast<double>(precision));
  double v = x * scale;
  if (method == "common")
    v = std::round(v);  // half away from zero, as jinja2's "common"
  else if (method == "floor")
    v = std::floor(v);
  else if (method == "ceil")
    v = std::ceil(v);
  else
    throw RenderError{"method must be common, ceil or floor", line};
  return Value::real(v / scale);
}

Value tojson_filter(Renderer& r, const Value& v, Args& a) {
  JsonStyle style;
  // transformers: tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False) ->
  // json.dumps; jinja2: tojson(x, indent=None) -> htmlsafe_json_dumps (sort_keys=True, ASCII only).
  const bool transformers = r.options.transformers_tojson;
  const Value indent = a.get(transformers ? 1 : 0, "indent");
  if (!indent.is_undefined() && indent.kind != Value::kNone) {
    style.indent = static_cast<int>(int_arg(indent, 0, a.line));
    style.item_separator = ",";  // json.dumps's default separators once indent is given
  }
  if (transformers) {
    style.ensure_ascii = truthy(a.get(0, "ensure_ascii"));
    const Value separators = a.get(2, "separators");
    if (separators.kind == Value::kList && separators.list->size() == 2) {
      style.item_separator = expect_string((*separators.list)[0], "separators", a.line);
      style.key_separator = expect_string((*separators.list)[1], "separators", a.line);
    }
    style.sort_keys = truthy(a.get(3, "sort_keys"));
  } else {
    if (a.positional.size() > 1 || a.keywords.size() > (a.get(99, "indent").is_undefined() ? 0u : 1u))
      throw RenderError{"jinja2's tojson takes only indent", a.line};
    style.ensure_ascii = true;
    style.sort_keys = true;
    style.html_safe = true;
  }
  std::string out;
  dump_json(out, v, style, 0, a.line);
  return Value::string(out);
}

int64_t length(Renderer& r, const Value& v, int line) {
  switch (v.kind) {
    case Value::kString:
      return static_cast<int64_t>(decode_utf8(v.s).size());
    case Value::kList:
      return static_cast<int64_t>(v.list->size());
    case Value::kDict:
    case Value::kNamespace:
      return static_cast<int64_t>(v.dict->items.size());
    case Value::kUndefined:
      r.check_defined(v, line);
      return 0;
    default:
      throw RenderError{std::string("object of type '") + kind_name(v) + "' has no len()", line};
  }
}

const std::map<std::string, FilterFn>& filters() {
  static const std::map<std::string, FilterFn> table = {
      {"abs",
       [](Renderer&, const Value& v, Args& a) {
         if (v.kind == Value::kFloat) return Value::real(std::fabs(v.f));
         if (v.kind == Value::kInt) return Value::integer(v.i < 0 ? -v.i : v.i);
         throw RenderError{"bad operand type for abs()", a.line};
       }},
      {"capitalize",
       [](Renderer& r, const Value& v, Args& a) { return Value::string(python_capitalize(r.str(v, a.line))); }},
      {"count", [](Renderer& r, const Value& v, Args& a) { return Value::integer(length(r, v, a.line)); }},
      {"default",
       [](Renderer&, const Value& v, Args& a) {
         const bool boolean = truthy(a.get(1, "boolean", Value::boolean(false)));
         const bool use_default = v.is_undefined() || (boolean && !truthy(v));
         return use_default ? a.get(0, "default_value", Value::string("")) : v;
       }},
      {"d", [](Renderer& r, const Value& v, Args& a) { return filters().at("default")(r, v, a); }},
      {"dictsort",
       [](Renderer& r, const Value& v, Args& a) {
         if (v.kind != Value::kDict) throw RenderError{"dictsort expects a dict", a.line};
         const bool case_sensitive = truthy(a.get(0, "case_sensitive"));
         const bool by_value = a.get(1, "by", Value::string("key")).s == "value";
         List items;
         for (const auto& item : v.dict->items)
           items.push_back(Value::make_list({Value::string(item.first), item.second}));
         std::stable_sort(items.begin(), items.end(), [&](const Value& x, const Value& y) {
           const size_t k = by_value ? 1 : 0;
           return compare(sort_key((*x.list)[k], case_sensitive), sort_key((*y.list)[k], case_sensitive), a.line) < 0;
         });
         if (truthy(a.get(2, "reverse"))) std::reverse(items.begin(), items.end());
         (void)r;
         return Value::make_list(std::move(items));
       }},
      {"escape", [](Renderer& r, const Value& v, Args& a) { return Value::string(html_escape(r.str(v, a.line))); }},
      {"e", [](Renderer& r, const Value& v, Args& a) { return Value::string(html_escape(r.str(v, a.line))); }},
      {"first",
       [](Renderer& r, const Value& v, Args& a) {
         List items = iterate(r, v, a.line);
         return items.empty() ? Value::undefined("first") : items.front();
       }},
      {"last",
       [](Renderer& r, const Value& v, Args& a) {
         List items = iterate(r, v, a.line);
         return items.empty() ? Value::undefined("last") : items.back();
       }},
      {"float",
       [](Renderer&, const Value& v, Args& a) {
         if (v.is_number()) return Value::real(v.number());
         if (v.kind == Value::kString) {
           const std::string t = strip(v.s, Value(), true, true);
           char* end = nullptr;
           const double x = std::strtod(t.c_str(), &end);
           if (!t.empty() && end && *end == '\0') return Value::real(x);
         }
         return a.get(0, "default", Value::real(0.0));
       }},
      {"int",
       [](Renderer&, const Value& v, Args& a) {
         if (v.kind == Value::kInt) return v;
         if (v.kind == Value::kBool) return Value::integer(v.b);
         if (v.kind == Value::kFloat) return Value::integer(static_cast<int64_t>(v.f));
         if (v.kind == Value::kString) {
           const std::string t = strip(v.s, Value(), true, true);
           char* end = nullptr;
           const long long x = std::strtoll(t.c_str(), &end, static_cast<int>(int_arg(a.get(1, "base"), 10, a.line)));
           if (!t.empty() && end && *end == '\0') return Value::integer(x);
           const double f = std::strtod(t.c_str(), &end);  // jinja2 falls back to int(float(value))
           if (!t.empty() && end && *end == '\0') return Value::integer(static_cast<int64_t>(f));
         }
         return a.get(0, "default", Value::integer(0));
       }},
      {"indent",
       [](Renderer& r, const Value& v, Args& a) {
         const Value width = a.get(0, "width", Value::integer(4));
         const std::string pad =
             width.kind == Value::kString ? width.s : std::string(static_cast<size_t>(int_arg(width, 4, a.line)), ' ');
         return Value::string(indent_text(r.str(v, a.line), pad, truthy(a.get(1, "first")), truthy(a.get(2, "blank"))));
       }},
      {"items",
       [](Renderer& r, const Value& v, Args& a) {
         if (v.is_undefined()) return Value::make_list();
         if (v.kind != Value::kDict) throw RenderError{"items expects a mapping", a.line};
         Args none;
         return (*dict_method(v, "items", a.line).call)(none);
         (void)r;
       }},
      {"join",
       [](Renderer& r, const Value& v, Args& a) {
         const std::string sep = a.get(0, "d", Value::string("")).s;
         const Value attribute = a.get(1, "attribute");
         std::string out;
         bool first = true;
         for (const auto& item : iterate(r, v, a.line)) {
           out += (first ? "" : sep) +
                  r.str(attribute.is_undefined() ? item : attribute_path(r, item, attribute, a.line), a.line);
           first = false;
         }
         return Value::string(out);
       }},
      {"length", [](Renderer& r, const Value& v, Args& a) { return Value::integer(length(r, v, a.line)); }},
      {"list", [](Renderer& r, const Value& v, Args& a) { return Value::make_list(iterate(r, v, a.line)); }},
      {"lower", [](Renderer& r, const Value& v, Args& a) { return Value::string(ascii_lower(r.str(v, a.line))); }},
      {"upper", [](Renderer& r, const Value& v, Args& a) { return Value::string(ascii_upper(r.str(v, a.line))); }},
      {"map",
       [](Renderer& r, const Value& v, Args& a) {
         List out;
         const Value attribute = a.get(99, "attribute");
         for (const auto& item : iterate(r, v, a.line)) {
           if (!attribute.is_undefined()) {
             Value x = attribute_path(r, item, attribute, a.line);
             if (x.is_undefined()) x = a.get(99, "default", x);
             out.push_back(x);
             continue;
           }
           const std::string name = expect_string(a.get(0, "filter"), "map", a.line);
           auto filter = filters().find(name);
           if (filter == filters().end()) throw RenderError{"no filter named '" + name + "'", a.line};
           Args rest;
           rest.line = a.line;
           rest.positional.assign(a.positional.begin() + 1, a.positional.end());
           out.push_back(filter->second(r, item, rest));
         }
         return Value::make_list(std::move(out));
       }},
      {"max",
       [](Renderer& r, const Value& v, Args& a) {
         List items = iterate(r, v, a.line);
         if (items.empty()) return Value::undefined("max");
         const bool cs = truthy(a.get(0, "case_sensitive"));
         return *std::max_element(items.begin(), items.end(), [&](const Value& x, const Value& y) {
           return compare(sort_key(x, cs), sort_key(y, cs), a.line) < 0;
         });
       }},
      {"min",
       [](Renderer& r, const Value& v, Args& a) {
         List items = iterate(r, v, a.line);
         if (items.empty()) return Value::undefined("min");
         const bool cs = truthy(a.get(0, "case_sensitive"));
         return *std::min_element(items.begin(), items.end(), [&](const Value& x, const Value& y) {
           return compare(sort_key(x, cs), sort_key(y, cs), a.line) < 0;
         });
       }},
      {"reject", [](Renderer& r, const Value& v, Args& a) { return select_items(r, v, a, false, false); }},
      {"rejectattr", [](Renderer& r, const Value& v, Args& a) { return select_items(r, v, a, true, false); }},
      {"select", [](Renderer& r, const Value& v, Args& a) { return select_items(r, v, a, false, true); }},
      {"selectattr", [](Renderer& r, const Value& v, Args& a) { return select_items(r, v, a, true, true); }},
      {"replace",
       [](Renderer& r, const Value& v, Args& a) {
         return Value::string(replace_all(r.str(v, a.line), r.str(a.get(0, "old"), a.line),
                                          r.str(a.get(1, "new"), a.line), int_arg(a.get(2, "count"), -1, a.line)));
       }},
      {"reverse",
       [](Renderer& r, const Value& v, Args& a) {
         if (v.kind == Value::kString) {
           auto cps = decode_utf8(v.s);
           std::reverse(cps.begin(), cps.end());
           return Value::string(encode_utf8(cps, 0, cps.size()));
         }
         List items = iterate(r, v, a.line);
         std::reverse(items.begin(), items.end());
         return Value::make_list(std::move(items));
       }},
      {"round",
       [](Renderer&, const Value& v, Args& a) {
         if (!v.is_number()) throw RenderError{"round expects a number", a.line};
         return python_round(v.number(), int_arg(a.get(0, "precision"), 0, a.line),
                             a.get(1, "method", Value::string("common")).s, a.line);
       }},
      {"safe", [](Renderer&, const Value& v, Args&) { return v; }},
      {"sort",
       [](Renderer& r, const Value& v, Args& a) {
         List items = iterate(r, v, a.line);
         const bool reverse = truthy(a.get(0, "reverse")), cs = truthy(a.get(1, "case_sensitive"));
         const Value attribute = a.get(2, "attribute");
         auto key = [&](const Value& x) {
           return sort_key(attribute.is_undefined() ? x : attribute_path(r, x, attribute, a.line), cs);
         };
         std::stable_sort(items.begin(), items.end(), [&](const Value& x, const Value& y) {
           return reverse ? compare(key(y), key(x), a.line) < 0 : compare(key(x), key(y), a.line) < 0;
         });
         return Value::make_list(std::move(items));
       }},
      {"string", [](Renderer& r, const Value& v, Args& a) { return Value::string(r.str(v, a.line)); }},
      {"sum",
       [](Renderer& r, const Value& v, Args& a) {
         Value total = a.get(1, "start", Value::integer(0));
         const Value attribute = a.get(0, "attribute");
         for (const auto& item : iterate(r, v, a.line))
           total = arithmetic("+", total, attribute.is_undefined() ? item : attribute_path(r, item, attribute, a.line),
                              a.line);
         return total;
       }},
      {"regex_replace",  // lm-eval's filter (lm_eval/utils.py): re.sub(pattern, repl, value, count)
       [](Renderer& r, const Value& v, Args& a) {
         const std::string pattern = expect_string(a.get(0, "pattern"), "regex_replace", a.line);
         const std::string repl = expect_string(a.get(1, "repl"), "regex_replace", a.line);
         const Value count = a.get(2, "count");
         if (!count.is_undefined() && count.kind != Value::kInt)
           throw RenderError{"regex_replace expects an integer count", a.line};
         try {
           return Value::string(
               python_sub_template(pattern, repl, r.str(v, a.line), count.is_undefined() ? 0 : count.i));
         } catch (const UserError& e) {
           throw RenderError{e.what(), a.line};
         }
       }},
      {"title", [](Renderer& r, const Value& v, Args& a) { return Value::string(jinja_title(r.str(v, a.line))); }},
      {"tojson", tojson_filter},
      {"trim", [](Renderer& r, const Value& v,
                  Args& a) { return Value::string(strip(r.str(v, a.line), a.get(0, "chars"), true, true)); }},
      {"unique",
       [](Renderer& r, const Value& v, Args& a) {
         List out;
         const bool cs = truthy(a.get(0, "case_sensitive"));
         const Value attribute = a.get(1, "attribute");
         std::vector<Value> seen;
         for (const auto& item : iterate(r, v, a.line)) {
           Value key = sort_key(attribute.is_undefined() ? item : attribute_path(r, item, attribute, a.line), cs);
           if (std::any_of(seen.begin(), seen.end(), [&](const Value& s) { return equals(s, key); })) continue;
           seen.push_back(key);
           out.push_back(item);
         }
         return Value::make_list(std::move(out));
       }},
      {"wordcount",
       [](Renderer& r, const Value& v, Args& a) {
         int64_t n = 0;  // jinja2 counts matches of \w+
         bool in_word = false;
         for (char32_t c : decode_utf8(r.str(v, a.line))) {
           const bool word = is_word_char(c);
           if (word && !in_word) ++n;
           in_word = word;
         }
         return Value::integer(n);
       }},
  };
  return table;
}

const std::map<std::string, TestFn>& tests() {
  static const std::map<std::string, TestFn> table = {
      {"boolean", [](Renderer&, const Value& v, Args&) { return v.kind == Value::kBool; }},
      {"callable", [](Renderer&, const Value& v, Args&) { return v.kind == Value::kCallable; }},
      {"defined", [](Renderer&, const Value& v, Args&) { return !v.is_undefined(); }},
      {"undefined", [](Renderer&, const Value& v, Args&) { return v.is_undefined(); }},
      {"divisibleby",
       [](Renderer&, const Value& v, Args& a) {
         const int64_t d = int_arg(a.get(0, "num"), 1, a.line);
         return d != 0 && v.kind == Value::kInt && v.i % d == 0;
       }},
      {"eq", [](Renderer&, const Value& v, Args& a) { return equals(v, a.get(0, "other")); }},
      {"equalto", [](Renderer&, const Value& v, Args& a) { return equals(v, a.get(0, "other")); }},
      {"==", [](Renderer&, const Value& v, Args& a) { return equals(v, a.get(0, "other")); }},
      {"ne", [](Renderer&, const Value& v, Args& a) { return !equals(v, a.get(0, "other")); }},
      {"!=", [](Renderer&, const Value& v, Args& a) { return !equals(v, a.get(0, "other")); }},
      {"lt", [](Renderer&, const Value& v, Args& a) { return compare(v, a.get(0, "other"), a.line) < 0; }},
      {"lessthan", [](Renderer&, const Value& v, Args& a) { return compare(v, a.get(0, "other"), a.line) < 0; }},
      {"<", [](Renderer&, const Value& v, Args& a) { return compare(v, a.get(0, "other"), a.line) < 0; }},
      {"<=", [](Renderer&, const Value& v, Args& a) { return compare(v, a.get(0, "other"), a.line) <= 0; }},
      {"greaterthan", [](Renderer&, const Value& v, Args& a) { return compare(v, a.get(0, "other"), a.line) > 0; }},
      {">", [](Renderer&, const Value& v, Args& a) { return compare(v, a.get(0, "other"), a.line) > 0; }},
      {">=", [](Renderer&, const Value& v, Args& a) { return compare(v, a.get(0, "other"), a.line) >= 0; }},
      {"le", [](Renderer&, const Value& v, Args& a) { return compare(v, a.get(0, "other"), a.line) <= 0; }},
      {"gt", [](Renderer&, const Value& v, Args& a) { return compare(v, a.get(0, "other"), a.line) > 0; }},
      {"ge", [](Renderer&, const Value& v, Args& a) { return compare(v, a.get(0, "other"), a.line) >= 0; }},
      {"even", [](Renderer&, const Value& v, Args&) { return v.kind == Value::kInt && v.i % 2 == 0; }},
      {"odd", [](Renderer&, const Value& v, Args&) { return v.kind == Value::kInt && v.i % 2 != 0; }},
      {"false", [](Renderer&, const Value& v, Args&) { return v.kind == Value::kBool && !v.b; }},
      {"true", [](Renderer&, const Value& v, Args&) { return v.kind == Value::kBool && v.b; }},
      {"float", [](Renderer&, const Value& v, Args&) { return v.kind == Value::kFloat; }},
      {"integer", [](Renderer&, const Value& v, Args&) { return v.kind == Value::kInt; }},
      {"number", [](Renderer&, const Value& v, Args&) { return v.is_number(); }},
      {"in", [](Renderer& r, const Value& v, Args& a) { return contains(r, a.get(0, "seq"), v, a.line); }},
      {"iterable", [](Renderer&, const Value& v,
                      Args&) { return v.kind == Value::kList || v.kind == Value::kDict || v.kind == Value::kString; }},
      {"sequence", [](Renderer&, const Value& v,
                      Args&) { return v.kind == Value::kList || v.kind == Value::kDict || v.kind == Value::kString; }},
      {"mapping", [](Renderer&, const Value& v, Args&) { return v.kind == Value::kDict; }},
      {"none", [](Renderer&, const Value& v, Args&) { return v.kind == Value::kNone; }},
      {"string", [](Renderer&, const Value& v, Args&) { return v.kind == Value::kString; }},
      {"lower", [](Renderer&, const Value& v, Args&) { return v.kind == Value::kString && ascii_lower(v.s) == v.s; }},
      {"upper", [](Renderer&, const Value& v, Args&) { return v.kind == Value::kString && ascii_upper(v.s) == v.s; }},
      {"sameas",
       [](Renderer&, const Value& v, Args& a) {
         const Value other = a.get(0, "other");
         if (v.kind != other.kind) return false;
         if (v.kind == Value::kNone || v.kind == Value::kUndefined) return true;
         if (v.kind == Value::kBool) return v.b == other.b;
         return (v.list && v.list == other.list) || (v.dict && v.dict == other.dict);
       }},
  };
  return table;
}

std::map<std::string, Value> make_globals() {
  std::map<std::string, Value> g;
  g["raise_exception"] = Value::function(
      [](Args& a) -> Value { throw Raised{a.positional.empty() ? std::string() : to_str(a.positional[0])}; });
  g["range"] = Value::function([](Args& a) {
    int64_t start = 0, stop, step = 1;
    if (a.positional.size() == 1) {
      stop = int_arg(a.positional[0], 0, a.line);
    } else if (a.positional.size() >= 2) {
      start = int_arg(a.positional[0], 0, a.line);
      stop = int_arg(a.positional[1], 0, a.line);
      if (a.positional.size() > 2) step = int_arg(a.positional[2], 1, a.line);
    } else {
      throw RenderError{"range expected at least 1 argument", a.line};
    }
    if (step == 0) throw RenderError{"range() arg 3 must not be zero", a.line};
    List items;
    for (int64_t k = start; step > 0 ? k < stop : k > stop; k += step) items.push_back(Value::integer(k));
    if (items.size() > 100000) throw RenderError{"range too big", a.line};  // jinja2's sandbox limit
    return Value::make_list(std::move(items));
  });
  g["namespace"] = Value::function([](Args& a) {
    Value ns = Value::make_dict();
    ns.kind = Value::kNamespace;
    for (const auto& positional : a.positional)
      if (positional.kind == Value::kDict)
        for (const auto& item : positional.dict->items) ns.dict->set(item.first, item.second);
    for (const auto& kw : a.keywords) ns.dict->set(kw.first, kw.second);
    return ns;
  });
  g["dict"] = Value::function([](Args& a) {
    Value d = Value::make_dict();
    for (const auto& kw : a.keywords) d.dict->set(kw.first, kw.second);
    return d;
  });
  g["strftime_now"] = Value::function([](Args& a) {
    const std::string format = expect_string(a.get(0, "format"), "strftime_now", a.line);
    const std::time_t now = std::time(nullptr);
    std::tm local{};
    localtime_r(&now, &local);
    char buffer[256];
    const size_t n = std::strftime(buffer, sizeof buffer, format.c_str(), &local);
    return Value::string(std::string(buffer, n));
  });
  return g;
}

}  // namespace

// ---------------------------------------------------------------------------------------------

std::string python_float_repr(double value) {
  if (std::isnan(value)) return "nan";
  if (std::isinf(value)) return value > 0 ? "inf" : "-inf";
  if (value == 0) return std::signbit(value) ? "-0.0" : "0.0";
  char buffer[40];
  for (int precision = 1; precision <= 17; ++precision) {  // the shortest digits that round-trip
    std::snprintf(buffer, sizeof buffer, "%.*e", precision - 1, value);
    if (std::strtod(buffer, nullptr) == value) break;
  }
  // buffer: [-]d.ddde[+-]xx -> digits and decimal exponent
  std::string text = buffer;
  const size_t e = text.find('e');
  const int exponent = std::atoi(text.c_str() + e + 1);
  std::string mantissa = text.substr(0, e);
  const bool negative = mantissa[0] == '-';
  if (negative) mantissa.erase(0, 1);
  std::string digits;
  for (char c : mantissa)
    if (c != '.') digits += c;
  while (digits.size() > 1 && digits.back() == '0') digits.pop_back();
  std::string out = negative ? "-" : "";
  if (exponent < -4 || exponent >= 16) {  // repr's switch to scientific notation
    out += digits.substr(0, 1);
    if (digits.size() > 1) out += "." + digits.substr(1);
    char exp[8];
    std::snprintf(exp, sizeof exp, "e%c%02d", exponent < 0 ? '-' : '+', std::abs(exponent));
    return out + exp;
  }
  if (exponent < 0) return out + "0." + std::string(static_cast<size_t>(-exponent - 1), '0') + digits;
  const size_t integer_digits = static_cast<size_t>(exponent) + 1;
  if (digits.size() <= integer_digits) return out + digits + std::string(integer_digits - digits.size(), '0') + ".0";
  return out + digits.substr(0, integer_digits) + "." + digits.substr(integer_digits);
}

JinjaOptions chat_template_options() {
  JinjaOptions o;
  o.trim_blocks = true;
  o.lstrip_blocks = true;
  o.transformers_tojson = true;
  return o;
}

void append_utf8(std::string& out, char32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

size_t read_python_string(const std::string& text, size_t pos, std::string& out, int* newlines) {
  const char quote = text[pos++];
  while (true) {
    if (pos >= text.size()) throw UserError("unterminated string");
    const char c = text[pos];
    if (c == quote) return pos + 1;
    if (c == '\n') ++*newlines;
    if (c != '\\') {
      out += c;
      ++pos;
      continue;
    }
    if (pos + 1 >= text.size()) throw UserError("unterminated string");
    const char e = text[pos + 1];
    pos += 2;
    auto hex = [&](size_t digits) {
      if (pos + digits > text.size()) throw UserError("truncated \\x / \\u escape");
      for (size_t d = 0; d < digits; ++d)
        if (!std::isxdigit(static_cast<unsigned char>(text[pos + d]))) throw UserError("truncated \\x / \\u escape");
      const auto cp = static_cast<char32_t>(std::strtoul(text.substr(pos, digits).c_str(), nullptr, 16));
      if (cp > 0x10FFFF) throw UserError("illegal Unicode character in an escape");
      pos += digits;
      append_utf8(out, cp);
    };
    switch (e) {
      case 'n':
        out += '\n';
        break;
      case 't':
        out += '\t';
        break;
      case 'r':
        out += '\r';
        break;
      case '\\':
        out += '\\';
        break;
      case '\'':
        out += '\'';
        break;
      case '"':
        out += '"';
        break;
      case 'a':
        out += '\a';
        break;
      case 'b':
        out += '\b';
        break;
      case 'f':
        out += '\f';
        break;
      case 'v':
        out += '\v';
        break;
      case '0':
        out += '\0';
        break;
      case '\n':
        ++*newlines;
        break;  // line continuation
      case 'x':
        hex(2);
        break;
      case 'u':
        hex(4);
        break;
      case 'U':
        hex(8);
        break;
      default:
        out += '\\';
        out += e;
    }
  }
}

std::string python_lower(const std::string& text) { return ascii_lower(text); }
std::string python_upper(const std::string& text) { return ascii_upper(text); }

JinjaOptions lm_eval_options() {
  JinjaOptions o;
  o.keep_trailing_newline = true;
  o.strict_undefined = true;
  o.regex_replace_filter = true;
  return o;
}

struct JinjaTemplate::Parsed {
  std::string origin;
  JinjaOptions options;
  Body body;
};

JinjaTemplate::JinjaTemplate(const std::string& source, const std::string& origin, JinjaOptions options)
    : parsed_(std::make_unique<Parsed>()) {
  parsed_->origin = origin;
  parsed_->options = options;
  Lexer lexer(source, origin, options);
  Parser parser(lexer.run(), origin, options);
  parsed_->body = parser.parse_template();
}

JinjaTemplate::~JinjaTemplate() = default;
JinjaTemplate::JinjaTemplate(JinjaTemplate&&) noexcept = default;
JinjaTemplate& JinjaTemplate::operator=(JinjaTemplate&&) noexcept = default;

JinjaRender JinjaTemplate::render(const nlohmann::ordered_json& context) const {
  Renderer r{parsed_->options, {}, {}, {}, make_globals()};
  r.scopes.emplace_back();
  if (!context.is_object()) throw UserError(parsed_->origin + ": the template's context must be an object");
  for (auto it = context.begin(); it != context.end(); ++it) r.scopes[0][it.key()] = from_json(it.value());
  try {
    r.exec(parsed_->body);
  } catch (const RenderError& e) {
    throw UserError(parsed_->origin + ":" + std::to_string(e.line) + ": " + e.message);
  } catch (const Raised& e) {
    throw UserError(parsed_->origin + ": the template raised: " + e.message);
  } catch (const BreakSignal&) {
    throw UserError(parsed_->origin + ": {% break %} outside a loop");
  } catch (const ContinueSignal&) {
    throw UserError(parsed_->origin + ": {% continue %} outside a loop");
  }
  return {std::move(r.out), std::move(r.spans)};
}

}  // namespace posttrain
