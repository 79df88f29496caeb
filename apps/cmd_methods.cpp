// posttrain methods: what is registered (in-tree, plus what plugins named with --plugin add): training
// methods, preference losses, advantage estimators, reward functions, eval suites and attacks.
#include <iostream>

#include "apps/cli.h"
#include "trainers/plugin.h"
#include "trainers/preference_losses.h"
#include "trainers/rewards.h"
#include "trainers/rl_math.h"
#include "trainers/run.h"

#include "eval_hooks/suite.h"
#include "redteam/attack.h"

namespace posttrain::cli {

namespace {

void print_entry(const std::string& name, const std::string& description) {
  std::cout << "  " << name << std::string(name.size() < 22 ? 22 - name.size() : 1, ' ') << description << "\n";
}

}  // namespace

int methods(const std::vector<std::string>& args) {
  po::options_description options("methods options");
  std::vector<std::string> plugins;
  options.add_options()("plugin", po::value(&plugins)->composing(), "also load this plugin library (repeatable)");
  po::variables_map vm;
  if (!parse("methods", "[--plugin LIB.so ...]", options, args, vm)) return 0;
  load_plugins(plugins);
  std::cout << "trainers (recipe key `method:`):\n";
  for (const auto& name : trainer_names()) print_entry(name, trainer_description(name));
  std::cout << "preference losses (dpo.loss):\n";
  for (const auto& name : preference_loss_names()) print_entry(name, find_preference_loss(name)->description);
  std::cout << "advantage estimators (grpo.estimator):\n";
  for (const auto& name : advantage_estimator_names()) print_entry(name, find_advantage_estimator(name)->description);
  std::cout << "reward functions (grpo.rewards / ppo.rewards entries):\n";
  for (const auto& name : reward_function_names()) print_entry(name, reward_function_description(name));
  std::cout << "eval suites (recipe `evals:` / posttrain eval --suite; or a YAML task file):\n";
  for (const auto& name : suite_names()) print_entry(name, suite_description(name));
  std::cout << "attacks on eval suites (posttrain redteam --attack):\n";
  for (const auto& name : attack_names()) print_entry(name, find_attack_info(name)->description);
  return 0;
}

}  // namespace posttrain::cli
