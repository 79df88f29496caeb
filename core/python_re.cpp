#include "core/python_re.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <algorithm>
#include <cctype>
#include <map>
#include <memory>
#include <mutex>

#include "core/error.h"

namespace posttrain {

namespace {

struct CodeDeleter {
  void operator()(pcre2_code* code) const { pcre2_code_free(code); }
};
using Code = std::shared_ptr<pcre2_code>;

// Compiled once per pattern: a task's filter runs on every generation.
Code compiled(const std::string& pattern, const std::string& where) {
  static std::mutex mutex;
  static std::map<std::string, Code> cache;
  std::lock_guard<std::mutex> lock(mutex);
  auto it = cache.find(pattern);
  if (it != cache.end()) return it->second;
  int error_code = 0;
  PCRE2_SIZE error_offset = 0;
  pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.c_str()), pattern.size(), PCRE2_UTF | PCRE2_UCP,
                                   &error_code, &error_offset, nullptr);
  if (code == nullptr) {
    PCRE2_UCHAR message[256];
    pcre2_get_error_message(error_code, message, sizeof(message));
    fail(where, "regex \"" + pattern + "\" does not compile at offset " + std::to_string(error_offset) + ": " +
                    reinterpret_cast<char*>(message));
  }
  Code shared(code, CodeDeleter());
  cache.emplace(pattern, shared);
  return shared;
}

// Calls use(ovector, group_count) for each non-overlapping match (at most `limit`, 0 = all); an
// empty match moves on by one character, as Python's scanner does.
template <typename Use>
void for_each_match(const std::string& pattern, const std::string& text, Use use, int64_t limit = 0) {
  const Code code = compiled(pattern, "regex");
  uint32_t groups = 0;
  pcre2_pattern_info(code.get(), PCRE2_INFO_CAPTURECOUNT, &groups);
  std::unique_ptr<pcre2_match_data, void (*)(pcre2_match_data*)> match(
      pcre2_match_data_create_from_pattern(code.get(), nullptr), pcre2_match_data_free);
  // Patterns come from task files, hackathon submissions among them: a pattern that backtracks
  // without end fails its match (an error naming it) instead of stalling the judge.
  std::unique_ptr<pcre2_match_context, void (*)(pcre2_match_context*)> context(pcre2_match_context_create(nullptr),
                                                                               pcre2_match_context_free);
  pcre2_set_match_limit(context.get(), 1000000);
  pcre2_set_depth_limit(context.get(), 10000);
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  size_t offset = 0;
  int64_t found = 0;
  while (offset <= text.size() && (limit <= 0 || found < limit)) {
    ++found;
    const int rc = pcre2_match(code.get(), subject, text.size(), offset, 0, match.get(), context.get());
    if (rc == PCRE2_ERROR_NOMATCH) break;
    if (rc == PCRE2_ERROR_MATCHLIMIT || rc == PCRE2_ERROR_DEPTHLIMIT)
      throw UserError("regex \"" + pattern + "\": gave up after a million backtracking steps (simplify the pattern)");
    if (rc < 0) throw UserError("regex \"" + pattern + "\": matching failed (error " + std::to_string(rc) + ")");
    const PCRE2_SIZE* ovector = pcre2_get_ovector_pointer(match.get());
    use(ovector, groups);
    if (ovector[1] > ovector[0]) {
      offset = ovector[1];
    } else {  // empty match: step over one whole UTF-8 character
      offset = ovector[1] + 1;
      while (offset < text.size() && (static_cast<unsigned char>(text[offset]) & 0xC0) == 0x80) ++offset;
    }
  }
}

// One piece of a replacement template: literal text, or a group's text.
struct TemplatePiece {
  std::string literal;
  int group = -1;
};

std::vector<TemplatePiece> parse_template(const std::string& pattern, const std::string& repl) {
  const Code code = compiled(pattern, "regex");
  uint32_t groups = 0;
  pcre2_pattern_info(code.get(), PCRE2_INFO_CAPTURECOUNT, &groups);
  std::vector<TemplatePiece> pieces(1);
  auto group_ref = [&](int number) {
    if (number < 0 || static_cast<uint32_t>(number) > groups)
      throw UserError("regex replacement \"" + repl + "\": invalid group reference " + std::to_string(number));
    pieces.push_back({"", number});
    pieces.push_back({});
  };
  for (size_t i = 0; i < repl.size(); ++i) {
    if (repl[i] != '\\' || i + 1 == repl.size()) {
      pieces.back().literal += repl[i];
      continue;
    }
    const char c = repl[++i];
    if (std::isdigit(static_cast<unsigned char>(c))) {  // \1 .. \99
      int number = c - '0';
      if (i + 1 < repl.size() && std::isdigit(static_cast<unsigned char>(repl[i + 1])))
        number = number * 10 + (repl[++i] - '0');
      group_ref(number);
    } else if (c == 'g') {  // \g<number> or \g<name>
      const size_t close = repl.find('>', i);
      if (i + 1 >= repl.size() || repl[i + 1] != '<' || close == std::string::npos)
        throw UserError("regex replacement \"" + repl + "\": missing group name after \\g");
      const std::string name = repl.substr(i + 2, close - i - 2);
      i = close;
      if (!name.empty() &&
          std::all_of(name.begin(), name.end(), [](char d) { return std::isdigit(static_cast<unsigned char>(d)); })) {
        if (name.size() > 4) throw UserError("regex replacement \"" + repl + "\": invalid group reference " + name);
        group_ref(std::stoi(name));
      } else {
        const int number = pcre2_substring_number_from_name(code.get(), reinterpret_cast<PCRE2_SPTR>(name.c_str()));
        if (number < 0) throw UserError("regex replacement \"" + repl + "\": unknown group name " + name);
        group_ref(number);
      }
    } else {
      static const std::string escapes = "ntrfvab\\";
      static const char values[] = {'\n', '\t', '\r', '\f', '\v', '\a', '\b', '\\'};
      const size_t e = escapes.find(c);
      if (e != std::string::npos) {
        pieces.back().literal += values[e];
      } else if (std::isalpha(static_cast<unsigned char>(c))) {
        throw UserError("regex replacement \"" + repl + "\": bad escape \\" + std::string(1, c));
      } else {
        pieces.back().literal += '\\';
        pieces.back().literal += c;
      }
    }
  }
  return pieces;
}

}  // namespace

void check_python_regex(const std::string& pattern, const std::string& where) { compiled(pattern, where); }

std::vector<std::vector<std::string>> python_findall(const std::string& pattern, const std::string& text) {
  std::vector<std::vector<std::string>> out;
  for_each_match(pattern, text, [&](const PCRE2_SIZE* ovector, uint32_t groups) {
    std::vector<std::string> found;
    for (uint32_t g = groups == 0 ? 0 : 1; g <= groups; ++g) {
      const PCRE2_SIZE begin = ovector[2 * g], end = ovector[2 * g + 1];
      found.push_back(begin == PCRE2_UNSET ? std::string() : text.substr(begin, end - begin));
    }
    out.push_back(std::move(found));
  });
  return out;
}

std::string python_sub_template(const std::string& pattern, const std::string& replacement, const std::string& text,
                                int64_t count) {
  const auto pieces = parse_template(pattern, replacement);
  std::string out;
  size_t copied = 0;
  for_each_match(
      pattern, text,
      [&](const PCRE2_SIZE* ovector, uint32_t) {
        out += text.substr(copied, ovector[0] - copied);
        for (const auto& piece : pieces) {
          if (piece.group < 0) {
            out += piece.literal;
          } else if (ovector[2 * piece.group] != PCRE2_UNSET) {  // a group that took no part adds ""
            out += text.substr(ovector[2 * piece.group], ovector[2 * piece.group + 1] - ovector[2 * piece.group]);
          }
        }
        copied = ovector[1];
      },
      count);
  return out + text.substr(copied);
}

std::string python_sub(const std::string& pattern, const std::string& replacement, const std::string& text) {
  std::string out;
  size_t copied = 0;
  for_each_match(pattern, text, [&](const PCRE2_SIZE* ovector, uint32_t) {
    out += text.substr(copied, ovector[0] - copied) + replacement;
    copied = ovector[1];
  });
  return out + text.substr(copied);
}

}  // namespace posttrain
