#include "trainers/rewards.h"

#include <torch/torch.h>

#include <map>
#include <nlohmann/json.hpp>
#include <regex>

#include "core/error.h"
#include "datasets/sft_data.h"
#include "datasets/testbed.h"
#include "models/checkpoint.h"

namespace posttrain {

namespace {

struct Registered {
  RewardFactory factory;
  std::string description;
};

std::map<std::string, Registered>& registry() {
  static std::map<std::string, Registered> table;
  return table;
}

std::string trim(const std::string& s) {
  const auto begin = s.find_first_not_of(" \t\r\n");
  if (begin == std::string::npos) return "";
  return s.substr(begin, s.find_last_not_of(" \t\r\n") - begin + 1);
}

// The record's `field` as text (a string, or a number / bool written as JSON).
std::string record_field(const Rollout& rollout, const std::string& field) {
  const auto record = nlohmann::json::parse(rollout.record);
  if (!record.contains(field))
    throw UserError("reward: prompt record has no \"" + field + "\" field: " + rollout.record.substr(0, 120));
  const auto& value = record[field];
  return value.is_string() ? value.get<std::string>() : value.dump();
}

// 1 if the trimmed response equals the record's answer field (trimmed), else 0.
class ExactMatch : public RewardFunction {
 public:
  explicit ExactMatch(std::string field) : field_(std::move(field)) {}
  std::vector<double> score(const std::vector<Rollout>& rollouts) override {
    std::vector<double> out;
    for (const auto& r : rollouts) out.push_back(trim(r.response_text) == trim(record_field(r, field_)) ? 1.0 : 0.0);
    return out;
  }

 private:
  std::string field_;
};

// 1 if the response contains the record's answer field, else 0.
class Contains : public RewardFunction {
 public:
  explicit Contains(std::string field) : field_(std::move(field)) {}
  std::vector<double> score(const std::vector<Rollout>& rollouts) override {
    std::vector<double> out;
    for (const auto& r : rollouts)
      out.push_back(r.response_text.find(trim(record_field(r, field_))) != std::string::npos ? 1.0 : 0.0);
    return out;
  }

 private:
  std::string field_;
};

// 1 if the response matches `pattern` (ECMAScript regex, searched anywhere), else 0: format rewards.
class RegexMatch : public RewardFunction {
 public:
  RegexMatch(const std::string& pattern, YamlSection& options) {
    try {
      pattern_ = std::regex(pattern, std::regex::ECMAScript);
    } catch (const std::regex_error& e) {
      options.fail_at("pattern", std::string("is not a valid regular expression: ") + e.what());
    }
  }
  std::vector<double> score(const std::vector<Rollout>& rollouts) override {
    std::vector<double> out;
    for (const auto& r : rollouts) out.push_back(std::regex_search(r.response_text, pattern_) ? 1.0 : 0.0);
    return out;
  }

 private:
  std::regex pattern_;
};

// -(generated tokens) / per_tokens: a pressure towards short answers.
class LengthPenalty : public RewardFunction {
 public:
  explicit LengthPenalty(double per_tokens) : per_tokens_(per_tokens) {}
  std::vector<double> score(const std::vector<Rollout>& rollouts) override {
    std::vector<double> out;
    for (const auto& r : rollouts) out.push_back(-static_cast<double>(r.response_ids.size()) / per_tokens_);
    return out;
  }

 private:
  double per_tokens_;
};

// A trained reward model (method: reward) scores prompt + response, read at the response's last
// token, as in its training.
class RewardModel : public RewardFunction {
 public:
  RewardModel(const std::string& dir, const RewardSetup& setup) {
    LoadOptions load;
    load.device = parse_device(setup.device);
    model_ = load_model(dir, load);
    if (!model_->is_classifier() || model_->config.num_labels != 1)
      throw UserError(dir + ": not a reward model (architectures is " + model_->config.architecture() + ")");
    model_->eval();
    pad_id_ = static_cast<int32_t>(model_->config.pad_token_id);
  }
  std::vector<double> score(const std::vector<Rollout>& rollouts) override {
    torch::NoGradGuard no_grad;
    size_t longest = 0;
    for (const auto& r : rollouts) longest = std::max(longest, r.prompt_ids.size() + r.response_ids.size());
    const int64_t B = static_cast<int64_t>(rollouts.size()), T = static_cast<int64_t>(longest);
    auto ids = torch::full({B, T}, pad_id_, torch::kInt64);
    auto real = torch::zeros({B, T}, torch::kBool);
    for (int64_t b = 0; b < B; ++b) {
      const auto& r = rollouts[static_cast<size_t>(b)];
      std::vector<int64_t> row(r.prompt_ids.begin(), r.prompt_ids.end());
      row.insert(row.end(), r.response_ids.begin(), r.response_ids.end());
      ids[b].narrow(0, 0, static_cast<int64_t>(row.size())).copy_(torch::tensor(row, torch::kInt64));
      real[b].narrow(0, 0, static_cast<int64_t>(row.size())).fill_(true);
    }
    auto scores = last_token_scores(*model_, ids, real).select(1, 0).to(torch::kCPU, torch::kFloat64).contiguous();
    return std::vector<double>(scores.data_ptr<double>(), scores.data_ptr<double>() + B);
  }

 private:
  QwenForCausalLM model_{nullptr};
  int32_t pad_id_ = 0;
};

// The testbed's gold preference of the response, from the prompt record's testbed fields.
class GoldReward : public RewardFunction {
 public:
  std::vector<double> score(const std::vector<Rollout>& rollouts) override {
    std::vector<double> out;
    for (const auto& r : rollouts)
      out.push_back(
          testbed_gold_score(testbed_item_from_json(nlohmann::json::parse(r.record), "gold reward"), r.response_text));
    return out;
  }
};

const bool registered = [] {
  register_reward_function(
      "gold",
      [](YamlSection&, const RewardSetup&) -> std::unique_ptr<RewardFunction> {
        return std::make_unique<GoldReward>();
      },
      "the gold-preference testbed's gold score (prompts.jsonl records from posttrain testbed)");
  register_reward_function(
      "exact_match",
      [](YamlSection& o, const RewardSetup&) -> std::unique_ptr<RewardFunction> {
        return std::make_unique<ExactMatch>(o.get<std::string>("field", "answer"));
      },
      "1 if the trimmed response equals the prompt record's `field` (default answer)");
  register_reward_function(
      "contains",
      [](YamlSection& o, const RewardSetup&) -> std::unique_ptr<RewardFunction> {
        return std::make_unique<Contains>(o.get<std::string>("field", "answer"));
      },
      "1 if the response contains the prompt record's `field` (default answer)");
  register_reward_function(
      "regex",
      [](YamlSection& o, const RewardSetup&) -> std::unique_ptr<RewardFunction> {
        return std::make_unique<RegexMatch>(o.require<std::string>("pattern"), o);
      },
      "1 if the response matches `pattern` (ECMAScript regex), e.g. a required answer format");
  register_reward_function(
      "length_penalty",
      [](YamlSection& o, const RewardSetup&) -> std::unique_ptr<RewardFunction> {
        const double per_tokens = o.get<double>("per_tokens", 1.0);
        if (per_tokens <= 0) o.fail_at("per_tokens", "must be positive");
        return std::make_unique<LengthPenalty>(per_tokens);
      },
      "-(response tokens) / per_tokens");
  register_reward_function(
      "reward_model",
      [](YamlSection& o, const RewardSetup& setup) -> std::unique_ptr<RewardFunction> {
        const std::string dir = o.require<std::string>("model");
        if (setup.only_check_options) return nullptr;
        return std::make_unique<RewardModel>(dir, setup);
      },
      "a reward model folder (`model:`, trained with method: reward) scores prompt + response");
  return true;
}();

}  // namespace

void register_reward_function(const std::string& name, RewardFactory factory, const std::string& description) {
  registry()[name] = {std::move(factory), description};
}

std::vector<std::string> reward_function_names() {
  std::vector<std::string> names;
  for (const auto& item : registry()) names.push_back(item.first);
  return names;
}

std::string reward_function_description(const std::string& name) {
  auto it = registry().find(name);
  return it == registry().end() ? "" : it->second.description;
}

RewardMix::RewardMix(const YAML::Node& list, const std::string& path, const std::string& file,
                     const std::vector<std::string>& overrides, const RewardSetup& setup) {
  if (!list || !list.IsSequence() || list.size() == 0)
    throw UserError(file + ": " + path + " must be a list of {name, weight, ...} (at least one reward)");
  for (size_t i = 0; i < list.size(); ++i) {
    YamlSection entry(list[i], path + "[" + std::to_string(i) + "]", file, overrides);
    const std::string name = entry.require<std::string>("name");
    const double weight = entry.get<double>("weight", 1.0);
    auto it = registry().find(name);
    if (it == registry().end()) {
      std::string known;
      for (const auto& n : reward_function_names()) known += " " + n;
      entry.fail_at("name", "\"" + name + "\" is not a registered reward function (known:" + known + ")");
    }
    auto function = it->second.factory(entry, setup);
    entry.finish();
    terms_.push_back({name, weight, std::move(function)});
  }
}

std::vector<double> RewardMix::score(const std::vector<Rollout>& rollouts,
                                     std::vector<std::pair<std::string, double>>* means) {
  std::vector<double> total(rollouts.size(), 0.0);
  for (auto& term : terms_) {
    const auto values = term.function->score(rollouts);
    double sum = 0;
    for (size_t i = 0; i < values.size(); ++i) {
      total[i] += term.weight * values[i];
      sum += values[i];
    }
    if (means != nullptr) means->emplace_back(term.name, sum / std::max<double>(1, static_cast<double>(values.size())));
  }
  return total;
}

}  // namespace posttrain
