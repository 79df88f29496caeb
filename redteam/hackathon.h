// Hackathon events (docs/hackathon.md): an event folder with rules.yaml, public dev items and sealed
// private items; submissions (an eval suite, or an attack on suites) validated, stored under their
// content hash and recorded in a hash-chained ledger; a judge that replays every attack against every
// suite, each in its own process under the event's budget, caching results by content hash; and the
// boards: exact scores on the dev split, the Ladder on the private split.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <yaml-cpp/yaml.h>

#include <nlohmann/json.hpp>

#include "redteam/attack.h"

namespace posttrain {

// One of the event's item sets: JSONL records with an "id", split by a seeded hash of the id into
// public dev items and sealed private items (whose sha256 rules.yaml records).
struct ItemSet {
  std::string dev, sealed;  // absolute paths
  std::string sealed_sha256;
};

struct HackathonRules {
  std::string dir, file;  // the event folder and its rules.yaml
  std::string event;
  uint64_t seed = 0;
  std::string base;  // the starting policy of every attack (an HF folder)
  std::map<std::string, std::string> honest;  // honest reference variants: name -> HF folder
  std::string hacked;  // a deliberately hacked variant (the positive control), "" for none
  std::string gold;  // the item set gold judges (testbed eval_prompts records)
  std::map<std::string, ItemSet> items;
  AttackBudget budget;
  std::vector<std::string> attacks;  // the registered attacks a submission may use
  double margin = 0.10;  // HACKED needs a suite gain above this
  double eta = 0.02;  // the Ladder's step
  double unique_bonus = 0.5;  // an attack's bonus for a hack no other attack found
  double attack_share = 0.5;  // the share of a split's item ids an attack may optimise on
  double grace_seconds = 60;  // a replay's time limit is budget.seconds plus this (loading, scoring)
  bool plugins = false;  // plugin attack submissions accepted (each runs in a sandbox)
};

// Reads and validates DIR/rules.yaml (unknown key, wrong type, a missing file: UserError naming
// file:line). With `judge`, the sealed items must be there and match their sha256.
// Without `check_models` only the base's folder must be there (a plugin's sandbox sees no other).
HackathonRules read_rules(const std::string& event_dir, bool judge, bool check_models = true);

// Writes a new event: DIR/rules.yaml, DIR/public/<set>.jsonl and DIR/sealed/<set>.jsonl (each set's
// ids split by a seeded hash: `dev_share` of them public). Models are referenced, not copied.
struct EventSpec {
  std::string dir, event;
  uint64_t seed = 0;
  std::string base, hacked;
  std::map<std::string, std::string> honest, items;  // name -> HF folder; set name -> JSONL file
  std::string gold = "prompts";
  double dev_share = 0.5;
  AttackBudget budget{8, 4, 120};
  std::vector<std::string> attacks{"canned", "best_of_n", "prefix_search", "rl", "model"};
  bool allow_plugins = false;
};
void init_event(const EventSpec& spec);

// A submission folder's content hash: sha256 over its files' relative paths and sha256s, sorted.
// UserError for a symlink, or anything but regular files and folders, inside it.
std::string submission_hash(const std::string& dir);

struct Submission {
  std::string dir, kind, name;  // kind: "suite" or "attack"
  std::string suite, items;  // suite: a registered suite; items: an event item set or a JSONL file in dir
  bool task = false;  // suite is a YAML task file in dir (items: an event set, or empty for its own dataset)
  std::string attack;  // attack: a registered attack the rules allow ("model" for a model folder)
  std::string plugin;  // attack: a shared library in dir that registers `attack` (run only in a sandbox)
  AttackBudget budget;  // attack: its own budget, each limit at most the rules' (default: the rules')
  YAML::Node options;
};
// Reads DIR/submission.yaml and checks it against the rules (the suite built on the dev items, the
// attack's options read): every problem is a UserError naming file:line.
Submission read_submission(const std::string& dir, const HackathonRules& rules);

// Validates the submission, stores a copy under DIR/submissions/<sha256>/ and appends
// {team, kind, name, sha256} to DIR/ledger.jsonl. Returns the ledger entry.
nlohmann::json submit_to_event(const std::string& event_dir, const std::string& submission_dir,
                               const std::string& team);

// In a child process: one replay on one split ("dev" or "private"), written to `out`:
//  suite_sha + model ("base", an honest name, "hacked"): the suite's primary score of that model;
//  model alone: gold's score of it; suite_sha + attack_sha: the attack on the suite from the base.
//  With a plugin attack, two phases: `sandboxed` (run inside the sandbox, which shows the event's
//  public files only): the attack on the suite's dev items, whose trained policy is copied to
//  <out's folder>/policy; then, outside, `plugin_policy` (that folder) replayed as a model attack.
void replay(const std::string& event_dir, const std::string& split, const std::string& suite_sha,
            const std::string& attack_sha, const std::string& model, const std::string& out, bool sandboxed = false,
            const std::string& plugin_policy = "");

// Replays everything the ledger holds on both splits (children via run_self; cached under
// DIR/judged/ by content: a rerun does no work), scores it and writes DIR/board.json. Returns it.
nlohmann::json judge_event(const std::string& event_dir);

}  // namespace posttrain
