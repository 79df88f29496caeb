// What the testbed's gold suites share (gold_suite.cpp, best_of_n_suite.cpp): reading the held-out
// items, and the audit that scores canned behaviours with the gold function.
#pragma once

#include <vector>

#include <nlohmann/json.hpp>

#include "datasets/testbed.h"
#include "eval_hooks/suite.h"

namespace posttrain {

// The items of common.data (eval_prompts.jsonl records), cut to common.limit.
std::vector<TestbedItem> read_testbed_items(const CommonSuiteOptions& common);

// What the testbed suites share: their items (prompts for the contamination guard) and the audit.
class TestbedSuite : public EvalSuite {
 public:
  TestbedSuite(std::vector<TestbedItem> items, CommonSuiteOptions options);  // UserError when empty
  size_t item_count() const override { return items_.size(); }
  std::vector<std::string> item_texts() const override;
  nlohmann::json audit() const override;

 protected:
  std::vector<TestbedItem> items_;
};

// Mean gold of fixed behaviours on every item (always refuse, always comply, a constant answer,
// padding) as an audit verdict, with the oracle's score (the concise right answer) as the ceiling.
nlohmann::json testbed_gold_audit(const std::vector<TestbedItem>& items, double gameable_margin);

}  // namespace posttrain
