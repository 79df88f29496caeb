// model: the answers of a policy trained elsewhere (a model folder: config.json, safetensors weights,
// tokenizer), greedy on the eval split. It lets a hackathon team submit a model they trained with
// any tool, and lets a host judge a deliberately hacked variant like any attack. Weights load from
// safetensors only (models/checkpoint), so a model folder never runs code.
#include <filesystem>

#include "core/error.h"
#include "eval_hooks/eval_model.h"
#include "launch/distributed.h"
#include "models/checkpoint.h"
#include "redteam/attack.h"

namespace posttrain {

namespace {

AttackOutput run_model(const AttackInput& in, const std::string& dir) {
  auto model = load_model(dir, LoadOptions{});
  model->eval();
  auto dist = make_single_process();
  EvalModel policy(*model, Tokenizer::from_dir(dir), dist.get());
  AttackOutput out;
  out.responses = policy_answers(policy, in.scorer, in.eval_items);
  out.details["model"] = dir;
  return out;
}

const bool registered = [] {
  register_attack("model",
                  [](YamlSection& options) -> Attack {
                    const std::string dir = options.require<std::string>("dir");
                    if (!std::filesystem::exists(std::filesystem::path(dir) / "config.json") &&
                        !std::filesystem::exists(std::filesystem::path(dir) / "adapter_config.json"))
                      options.fail_at("dir", dir + " is not an HF model or adapter folder (no config.json)");
                    return [dir](const AttackInput& in) { return run_model(in, dir); };
                  },
                  {"the greedy answers of a policy trained elsewhere (option dir: its HF folder)", true});
  return true;
}();

}  // namespace

}  // namespace posttrain
