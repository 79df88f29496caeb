// Reward functions for RL (PPO, GRPO), registered by name and mixed with weights in a recipe:
//   rewards:
//     - {name: contains, weight: 1.0, field: answer}
//     - {name: length_penalty, weight: 0.01}
//     - {name: reward_model, weight: 1.0, model: runs/rm/final}
// The total reward of a response is sum_i weight_i * f_i(response); each f_i's mean is logged too.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <yaml-cpp/yaml.h>

#include "core/yaml_reader.h"
#include "models/tokenizer.h"

namespace posttrain {

// One sampled response to one prompt.
struct Rollout {
  std::string record;  // the prompt's JSONL record as JSON text (fields like "answer" live here)
  std::vector<int32_t> prompt_ids;
  std::vector<int32_t> response_ids;  // generated tokens; ends with the stop token when `stopped`
  std::string response_text;  // decoded, without the stop token
  bool stopped = false;  // ended with <|im_end|> / <|endoftext|> rather than at max_new_tokens
};

class RewardFunction {
 public:
  virtual ~RewardFunction() = default;
  virtual std::vector<double> score(const std::vector<Rollout>& rollouts) = 0;  // one value per rollout
};

struct RewardSetup {
  std::string device = "cpu";  // where model-based rewards run
  // Only the options are being checked (posttrain variants, before training): a factory validates
  // its entry and may return nullptr instead of loading a model another variant has yet to write.
  bool only_check_options = false;
};

// Builds a reward function from its recipe entry (options other than name/weight are its own;
// unknown ones are errors naming file:line).
using RewardFactory = std::function<std::unique_ptr<RewardFunction>(YamlSection& options, const RewardSetup&)>;

void register_reward_function(const std::string& name, RewardFactory factory, const std::string& description);
std::vector<std::string> reward_function_names();
std::string reward_function_description(const std::string& name);  // "" if unknown

// The weighted mix of a recipe's `rewards:` list.
class RewardMix {
 public:
  // `list` is the YAML sequence; `path` its dotted key (for messages), e.g. "grpo.rewards".
  RewardMix(const YAML::Node& list, const std::string& path, const std::string& file,
            const std::vector<std::string>& overrides, const RewardSetup& setup);
  // Total rewards [N]; `components` receives the mean of each named function (unweighted).
  std::vector<double> score(const std::vector<Rollout>& rollouts, std::vector<std::pair<std::string, double>>* means);

 private:
  struct Term {
    std::string name;
    double weight;
    std::unique_ptr<RewardFunction> function;
  };
  std::vector<Term> terms_;
};

}  // namespace posttrain
