// An eval summary's "item_scores" ({ids, scores, groups}, written by the eval hooks) read back as
// ItemScores: one reader for the report, the theory board and the hackathon judge.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "eval_hooks/comparisons.h"

namespace posttrain {

inline ItemScores item_scores_from_json(const nlohmann::json& item_scores) {
  ItemScores out;
  out.ids = item_scores.at("ids").get<std::vector<std::string>>();
  out.scores = item_scores.at("scores").get<std::vector<double>>();
  out.groups = item_scores.at("groups").get<std::vector<int>>();
  return out;
}

}  // namespace posttrain
