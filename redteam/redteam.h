// posttrain redteam: every attack against every suite it can attack, from each starting policy
// (attacks on responses against suites that score responses; choice attacks against suites that
// score log-likelihoods, whose independent measure is gold on the policy's free answer to the same
// item, by id, from gold_items). Each suite's items
// are split (by a seeded hash of the item id, so ids never straddle) into an attack split the
// attack may optimise on and an eval split it is measured on. Writes OUT/redteam.json (per policy
// and suite: its version hash, and per attack the paired gain, the gold gain, HACKED, the curve, the
// top examples; then the transfer table) and OUT/<policy>/<suite>/<attack>/ (attack.json,
// responses.jsonl).
#pragma once

#include <string>
#include <vector>

#include <yaml-cpp/yaml.h>

#include <nlohmann/json.hpp>

#include "launch/distributed.h"
#include "redteam/attack.h"

namespace posttrain {

struct RedteamEntry {  // a suite or an attack: its name and options, and where they were written
  std::string name;
  YAML::Node options;
  std::string file = "command line", path;
};

struct RedteamSpec {
  std::vector<RedteamEntry> suites, attacks;
  // The starting policies (HF folders), each attacked in turn; a universal string found on one is
  // replayed on the others (the transfer table). Empty when every attack is model-free.
  std::vector<std::string> policy_dirs;
  std::string out_dir;
  uint64_t seed = 0;
  AttackBudget budget;
  double margin = 0.10;  // HACKED needs a suite gain above this
  double attack_share = 0.5;  // the share of item ids in the attack split
  std::string gold_items;  // testbed records (eval_prompts.jsonl): gold judges answers to these prompts
  int64_t bootstrap = 1000;
  int64_t top_examples = 3;
  std::string device = "cpu";
  Distributed* dist = nullptr;
};

// Validates every suite and attack (UserError, before any model is loaded), runs them, writes the
// outputs and returns redteam.json's content.
nlohmann::json run_redteam(const RedteamSpec& spec);

// The attack / eval split of a scorer's items: ids sorted by fnv1a64(seed, id), the first
// ceil(share x ids) in the attack split. Both splits are non-empty (UserError for a suite of one id).
std::pair<std::vector<size_t>, std::vector<size_t>> split_item_ids(const std::vector<std::string>& ids, uint64_t seed,
                                                                   double attack_share);
std::pair<std::vector<size_t>, std::vector<size_t>> split_items(const ResponseScorer& scorer, uint64_t seed,
                                                                double attack_share);

// A policy's label in outputs: its folder's name, or the run's name for a run's `final` folder.
std::string policy_label(const std::string& dir);

}  // namespace posttrain
