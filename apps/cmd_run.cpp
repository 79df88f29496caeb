// posttrain run RECIPE.yaml [key.sub=value ...]: one training run, in this process.
#include <iostream>

#include "apps/cli.h"
#include "eval_hooks/hooks.h"
#include "eval_hooks/overoptimization.h"
#include "trainers/run.h"

namespace posttrain::cli {

namespace {

// The recipe's `evals:` as a policy hook: trainers call it, eval_hooks/ runs the suites (the two
// layers meet only here). Suites are built (and checked) before training starts.
PolicyHook suite_hook(const RunContext& ctx) {
  if (ctx.recipe.evals.empty()) return {};
  EvalEnvironment env;
  env.dist = ctx.dist;
  env.out_dir = ctx.run_dir;
  env.tokenizer_dir = ctx.tokenizer_dir;
  env.reference_dir = ctx.base_dir;
  env.device = ctx.recipe.train.device;
  env.train_data = {ctx.recipe.data.train};
  env.total_steps = ctx.recipe.train.steps;
  env.log_metrics = [&ctx](const nlohmann::json& record) { ctx.log_metrics(record); };
  auto runner = std::make_shared<EvalRunner>(env, ctx.recipe.evals);
  return [runner](RunContext&, QwenForCausalLMImpl& policy, int64_t step, HookPoint when) {
    runner->on_policy(policy, step,
                      when == HookPoint::kAfterRun     ? EvalPoint::kAfterRun
                      : when == HookPoint::kCheckpoint ? EvalPoint::kCheckpoint
                                                       : EvalPoint::kStep);
  };
}

// RL runs (prompt data): every 10 steps rank 0 refits each logged reward against sqrt(KL) and warns,
// in the log and on stderr, when one goes past its fitted peak (eval_hooks/overoptimization.h).
PolicyHook overoptimization_hook(const RunContext& ctx) {
  if (ctx.rank != 0 || trainer_data_kind(ctx.recipe.method) != "prompts") return {};
  auto watch = std::make_shared<OveroptimizationWatch>(ctx.run_dir + "/metrics.jsonl");
  return [watch](RunContext& ctx, QwenForCausalLMImpl&, int64_t step, HookPoint when) {
    if (when == HookPoint::kStep && step % 10 != 0) return;
    for (const auto& warning : watch->check()) ctx.log_event("step " + std::to_string(step) + ": " + warning);
  };
}

}  // namespace

// Both hooks, each called at every point (each decides itself whether to act).
PolicyHook make_eval_hook(const RunContext& ctx) {
  std::vector<PolicyHook> hooks;
  for (PolicyHook hook : {suite_hook(ctx), overoptimization_hook(ctx)})
    if (hook) hooks.push_back(std::move(hook));
  if (hooks.empty()) return {};
  return [hooks](RunContext& c, QwenForCausalLMImpl& policy, int64_t step, HookPoint when) {
    for (const auto& hook : hooks) hook(c, policy, step, when);
  };
}

int run(const std::vector<std::string>& args) {
  po::options_description options("run options");
  std::string recipe;
  std::vector<std::string> overrides;
  options.add_options()("recipe", po::value(&recipe)->required(), "recipe YAML file")(
      "override", po::value(&overrides)->multitoken(),
      "key.sub=value settings that replace the recipe's (positional after the recipe)")(
      "resume-with-changes", po::bool_switch(),
      "resume output_dir's checkpoint even if these settings differ from its recipe (recorded in the manifest)");
  po::positional_options_description positional;
  positional.add("recipe", 1).add("override", -1);
  po::variables_map vm;
  if (!parse("run", "RECIPE.yaml [key.sub=value ...]", options, args, vm, &positional)) return 0;
  std::string command_line = "posttrain run";
  for (const auto& a : args) command_line += " " + a;
  RunOptions run_options{overrides, default_tokenizer_dir(), command_line};
  run_options.make_policy_hook = make_eval_hook;
  run_options.resume_with_changes = vm["resume-with-changes"].as<bool>();
  run_recipe(recipe, run_options);
  return 0;
}

}  // namespace posttrain::cli
