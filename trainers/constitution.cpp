#include "trainers/constitution.h"

#include <cmath>
#include <filesystem>

#include "core/error.h"
#include "core/yaml_reader.h"

namespace posttrain {

Constitution load_constitution(const std::string& path) {
  const YAML::Node root = load_yaml_file(path, "constitution");
  YamlSection top(root, "", path);
  Constitution c;
  c.name = top.get<std::string>("name", std::filesystem::path(path).stem().string());
  const YAML::Node principles = top.raw("principles");
  if (!principles || !principles.IsSequence() || principles.size() == 0)
    top.fail_at("principles", "must be a non-empty list of {name, critique, revision, comparison}");
  for (size_t i = 0; i < principles.size(); ++i) {
    YamlSection p(principles[i], "principles[" + std::to_string(i) + "]", path);
    Principle principle;
    principle.name = p.require<std::string>("name");
    principle.critique = p.require<std::string>("critique");
    principle.revision = p.require<std::string>("revision");
    principle.comparison = p.require<std::string>("comparison");
    p.finish();
    c.principles.push_back(principle);
  }
  top.finish();
  return c;
}

std::vector<ChatMessage> critique_messages(const std::string& prompt, const std::string& answer,
                                           const Principle& principle) {
  return {{"user", prompt}, {"assistant", answer}, {"user", "Critique request: " + principle.critique}};
}

std::vector<ChatMessage> revision_messages(const std::string& prompt, const std::string& answer,
                                           const std::string& critique, const Principle& principle) {
  auto messages = critique_messages(prompt, answer, principle);
  messages.push_back({"assistant", critique});
  messages.push_back({"user", "Revision request: " + principle.revision});
  return messages;
}

std::string comparison_prompt(const std::string& prompt, const std::string& first, const std::string& second,
                              const Principle& principle) {
  return "Consider this request to an assistant:\n" + prompt + "\n\n" + principle.comparison + "\n(A) " + first +
         "\n(B) " + second + "\nThe better answer is";
}

double averaged_preference(double ll_a_xy, double ll_b_xy, double ll_a_yx, double ll_b_yx) {
  const auto first_of_two = [](double first, double second) { return 1.0 / (1.0 + std::exp(second - first)); };
  const double x_shown_first = first_of_two(ll_a_xy, ll_b_xy);  // x is (A)
  const double x_shown_second = first_of_two(ll_b_yx, ll_a_yx);  // x is (B)
  return 0.5 * (x_shown_first + x_shown_second);
}

}  // namespace posttrain
