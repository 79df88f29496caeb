// `posttrain hackathon init DIR --base PRESET --testbed SEED`: an event's models and item sets built
// on the testbed, each step a child posttrain process (the commands a host would otherwise type,
// docs/hackathon.md "Hosting an event"): the world's data with a hedging corpus
// (`testbed --hedge`: the base complies with harmful requests, so refusal evals have headroom), the
// base pre-trained on it, honest variants (SFT on gold's demonstrations at increasing budgets: gold
// orders them by construction) and a deliberately hacked one (sft_exploit: refusal-then-comply).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "redteam/hackathon.h"

namespace posttrain {

struct EventWorld {
  std::string dir;  // where the world goes (DIR/world): data/, base/, honest/, hacked/
  std::string preset = "small";  // the base's shape (posttrain init-base --help lists the presets)
  uint64_t seed = 0;  // the testbed's world seed
  double hedge = 0.4;  // testbed --hedge
  int64_t base_steps = 400;
  std::vector<int64_t> honest_steps{5, 15, 45};
  int64_t hacked_steps = 30;
};

// Builds (or reuses, when a run's manifest says completed) every model and item set, and fills the
// event's base, honest, hacked, items and gold. A failed child is a UserError naming its log file.
void build_testbed_world(const EventWorld& world, EventSpec& spec);

}  // namespace posttrain
