#include "eval_hooks/perturb.h"

#include <algorithm>
#include <cctype>

#include "core/rng.h"

namespace posttrain {

namespace {

// {prefix before the question, text between the question and the options, answer cue}.
struct Phrasing {
  const char* before;
  const char* after_question;
  const char* cue;
};
constexpr Phrasing kPhrasings[] = {
    {"Question: ", "\n", "Answer:"},
    {"", "\n", "The correct answer is"},
    {"Q: ", "\n", "A:"},
};

std::string label_at(const std::string& labels, size_t k) {
  if (labels == "numbers") return std::to_string(k + 1);
  if (labels == "letters") {
    std::string label;
    for (size_t n = k + 1; n > 0; n = (n - 1) / 26) label.insert(label.begin(), static_cast<char>('A' + (n - 1) % 26));
    return label;
  }
  return "";
}

bool uses(const std::vector<std::string>& axes, const std::string& axis) {
  return std::find(axes.begin(), axes.end(), axis) != axes.end();
}

}  // namespace

int mc_template_count() { return static_cast<int>(sizeof(kPhrasings) / sizeof(kPhrasings[0])); }

std::string format_text(const std::string& text, const std::string& format) {
  std::string out;
  if (format == "lowercase") {
    out = text;
    for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));  // ASCII only
  } else if (format == "double_newline") {
    for (char c : text) out += c == '\n' ? std::string("\n\n") : std::string(1, c);
    if (out.find('\n') == std::string::npos) out = "\n" + out;  // one-line prompts: a leading blank line
  } else {
    out = text;
  }
  return out;
}

std::vector<Presentation> mc_presentations(const McStyle& style, int most_choices) {
  Presentation canonical;
  canonical.labels = style.labels;
  canonical.template_index = style.template_index;
  std::vector<Presentation> out{canonical};
  if (uses(style.axes, "order"))
    for (int s = 1; s < (style.max_shifts > 0 ? std::min(style.max_shifts, most_choices) : most_choices); ++s) {
      Presentation p = canonical;
      p.axis = "order";
      p.id = "order+" + std::to_string(s);
      p.shift = s;
      out.push_back(p);
    }
  if (uses(style.axes, "labels"))
    for (const char* labels : {"letters", "numbers", "none"})
      if (labels != style.labels) {
        Presentation p = canonical;
        p.axis = "labels";
        p.id = std::string("labels=") + labels;
        p.labels = labels;
        out.push_back(p);
      }
  if (uses(style.axes, "template") && style.template_index >= 0)
    for (int t = 0; t < mc_template_count(); ++t)
      if (t != style.template_index) {
        Presentation p = canonical;
        p.axis = "template";
        p.id = "template=" + std::to_string(t);
        p.template_index = t;
        out.push_back(p);
      }
  if (uses(style.axes, "format"))
    for (const char* format : {"lowercase", "double_newline", "paren_separator"}) {
      if (style.labels == "none" && std::string(format) == "paren_separator") continue;  // no labels to separate
      Presentation p = canonical;
      p.axis = "format";
      p.id = std::string("format=") + format;
      p.format = format;
      out.push_back(p);
    }
  return out;
}

std::vector<Presentation> text_presentations(const std::vector<std::string>& axes) {
  std::vector<Presentation> out{Presentation{}};
  if (uses(axes, "format"))
    for (const char* format : {"lowercase", "double_newline"}) {
      Presentation p;
      p.axis = "format";
      p.id = std::string("format=") + format;
      p.format = format;
      out.push_back(p);
    }
  return out;
}

RenderedMc render_mc(const McItem& item, const Presentation& p, const McStyle& style) {
  const size_t n = item.choices.size();
  // The canonical order: a permutation drawn from (seed, item id) by Fisher-Yates (a rotation would
  // keep the source's runs, e.g. true answers listed together); order perturbations rotate it.
  std::vector<int> base(n);
  for (size_t k = 0; k < n; ++k) base[k] = static_cast<int>(k);
  if (style.shuffle) {
    uint64_t state = style.seed ^ fnv1a64(item.id);
    for (size_t k = n - 1; k > 0; --k) std::swap(base[k], base[splitmix64(state) % (k + 1)]);
  }
  RenderedMc out;
  for (size_t k = 0; k < n; ++k) {
    out.order.push_back(base[(k + static_cast<size_t>(p.shift)) % n]);
    if (out.order.back() == item.gold) out.gold_position = static_cast<int>(k);
  }
  const std::string separator = p.format == "paren_separator" ? ") " : ". ";
  std::string options;
  if (p.labels != "none")
    for (size_t k = 0; k < n; ++k)
      options += label_at(p.labels, k) + separator + item.choices[static_cast<size_t>(out.order[k])] + "\n";
  const std::string question = p.format == "lowercase" ? format_text(item.question, "lowercase") : item.question;
  if (p.template_index < 0) {
    out.context = options.empty() ? question : question + "\n" + options;
  } else {
    const Phrasing& phrasing = kPhrasings[p.template_index % mc_template_count()];
    out.context = phrasing.before + question + phrasing.after_question + options + phrasing.cue;
  }
  if (p.format == "double_newline") out.context = format_text(out.context, "double_newline");
  for (size_t k = 0; k < n; ++k)
    out.continuations.push_back(p.labels == "none"
                                    ? style.target_delimiter + item.choices[static_cast<size_t>(out.order[k])]
                                    : " " + label_at(p.labels, k));
  return out;
}

}  // namespace posttrain
