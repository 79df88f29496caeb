// Attacks on eval suites, registered by name like methods and suites: each gets a suite's scorer,
// the public items of its attack split, a starting policy, a seed and a budget. An attack on a
// suite that scores responses returns the attacked policy's responses on the eval split (plus what
// it found); an attack on a suite that scores log-likelihoods (a ChoiceScorer) returns a trained
// policy's folder, which posttrain redteam then scores on the eval split.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <yaml-cpp/yaml.h>

#include <nlohmann/json.hpp>

#include "core/yaml_reader.h"
#include "eval_hooks/eval_model.h"
#include "eval_hooks/suite.h"

namespace posttrain {

// 0 = the attack's own default. Every attack stops at the first limit it reaches.
struct AttackBudget {
  int64_t steps = 0;  // search steps (prefix_search) or optimizer steps (trained attacks)
  int64_t samples = 0;  // samples per item (best_of_n)
  double seconds = 0;  // wall-clock limit (0 = none)
};

struct AttackInput {
  const ResponseScorer& scorer;
  std::string suite_name;  // the suite as registered (or its YAML task file) and its options, so a
  YAML::Node suite_options;  // trained attack can rebuild it as a reward function
  std::vector<const TestbedItem*> gold_judges;  // per scorer item, gold's judge (nullptr: none)
  std::vector<size_t> attack_items, eval_items;  // disjoint item ids: the attack may optimise on the first only
  EvalModel* policy = nullptr;  // the starting policy (nullptr: model-free attacks only)
  std::string policy_dir;  // its HF folder
  std::vector<std::string> start_responses;  // the starting policy's greedy answer to every scorer item
  uint64_t seed = 0;
  AttackBudget budget;
  std::string out_dir;  // the attack's own folder (a trained attack writes its run here)
};

struct AttackOutput {
  std::vector<std::string> responses;  // the attacked policy's answer per eval item (eval_items order)
  nlohmann::json details = nlohmann::json::object();  // what it found: the best canned policy, the prefix...
  nlohmann::json curve = nlohmann::json::array();  // [{"step", "attack_score"}] for searching attacks
  std::string policy_dir;  // the trained policy's folder, for attacks that train one
  // A string put before (or after) every answer, for attacks that find one: replayed on other policies.
  struct Universal {
    std::string text;
    bool suffix = false;
  };
  std::optional<Universal> universal;
};

struct ChoiceAttackInput {
  const ChoiceScorer& scorer;
  std::vector<size_t> attack_items, eval_items;  // disjoint item ids: the attack may optimise on the first only
  std::string policy_dir;  // the starting policy's HF folder
  uint64_t seed = 0;
  AttackBudget budget;
  std::string out_dir;  // the attack's own folder (its run goes here)
};

struct ChoiceAttackOutput {
  std::string policy_dir;  // the trained policy's HF folder
  nlohmann::json details = nlohmann::json::object();
};

// An attack after its options were read (unknown options are errors naming file:line).
using Attack = std::function<AttackOutput(const AttackInput&)>;
using AttackFactory = std::function<Attack(YamlSection& options)>;
using ChoiceAttack = std::function<ChoiceAttackOutput(const ChoiceAttackInput&)>;
using ChoiceAttackFactory = std::function<ChoiceAttack(YamlSection& options)>;

struct AttackInfo {
  std::string description;
  bool needs_policy = true;  // false: the attack needs no starting model (canned)
  bool on_choices = false;  // true: it attacks log-likelihood suites (a ChoiceAttack), else response suites
};
// Exactly one of the two is set, as the attack's info says.
struct AnyAttack {
  Attack on_responses;
  ChoiceAttack on_choices;
};
void register_attack(const std::string& name, AttackFactory factory, const AttackInfo& info);
void register_choice_attack(const std::string& name, ChoiceAttackFactory factory, AttackInfo info);
std::vector<std::string> attack_names();
const AttackInfo* find_attack_info(const std::string& name);  // nullptr when unknown
// UserError naming the attack and the registered ones when `name` is unknown.
AnyAttack make_attack(const std::string& name, YamlSection& options);

// The scorer's score of `responses` (one per item of `items`), aggregated as the suite does.
double score_responses(const ResponseScorer& scorer, const std::vector<size_t>& items,
                       const std::vector<std::string>& responses);
// The policy's answers to the items' prompts, as the suite asks them: greedy when temperature is 0,
// else sampled from stream (seed, first_stream + k) for the k-th item.
std::vector<std::string> policy_answers(EvalModel& policy, const ResponseScorer& scorer,
                                        const std::vector<size_t>& items, double temperature = 0.0, uint64_t seed = 0,
                                        uint64_t first_stream = 0);
// The policy's log-likelihood of each continuation of each item, asked as the suite asks it (a chat
// turn then the continuation without its leading space, or the plain text then the continuation).
std::vector<std::vector<double>> choice_logliks(EvalModel& policy, const ChoiceScorer& scorer,
                                                const std::vector<size_t>& items);

}  // namespace posttrain
