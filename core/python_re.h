// The two Python `re` functions lm-eval task files lean on (its regex filter is re.findall, its
// exact_match's regexes_to_ignore are re.sub), on PCRE2 with UTF + UCP so that \d, \w and \s match
// Unicode as they do in Python 3 str patterns. PCRE2 reads Python's syntax, (?P<name>...) included.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace posttrain {

// UserError("<where>: regex ... does not compile ...") for a bad pattern.
void check_python_regex(const std::string& pattern, const std::string& where);

// re.findall(pattern, text): per non-overlapping match, left to right, the whole match when the
// pattern has no groups, else each group's text ("" for a group that took no part).
std::vector<std::vector<std::string>> python_findall(const std::string& pattern, const std::string& text);

// re.sub(pattern, replacement, text) with a literal replacement (no group references).
std::string python_sub(const std::string& pattern, const std::string& replacement, const std::string& text);

// re.sub(pattern, template, text, count): the template's \1, \g<1>, \g<name> and escapes (\n, \t,
// \\, ...) expanded per match as Python expands them; count 0 replaces every match. UserError for
// a reference to a group the pattern lacks or an unknown ASCII-letter escape (Python's re.error).
std::string python_sub_template(const std::string& pattern, const std::string& replacement, const std::string& text,
                                int64_t count);

}  // namespace posttrain
