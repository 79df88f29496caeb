#include "redteam/hackathon_world.h"

#include <filesystem>
#include <iostream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/files.h"
#include "core/subprocess.h"

namespace fs = std::filesystem;

namespace posttrain {

namespace {

bool completed(const fs::path& run) {
  const fs::path manifest = run / "manifest.json";
  return fs::exists(manifest) && nlohmann::json::parse(read_file(manifest.string())).value("status", "") == "completed";
}

// One step of the world: `posttrain ARGS` in a child whose output (progress bars included) is ours,
// or goes to `log` when one is given.
void step(const std::string& what, const std::vector<std::string>& args, const std::string& log = "") {
  std::cerr << "posttrain: hackathon init: " << what << "\n";
  const ChildResult child = run_self(args, 0, log);
  if (child.exit_code != 0)
    throw UserError("hackathon init: " + what + " failed (exit code " + std::to_string(child.exit_code) + "; " +
                    (log.empty() ? "its output is above)" : "see " + log + ")"));
}

// A recipe written beside the runs, so the world's every run can be rerun by hand.
std::string sft_recipe(const std::string& base, const std::string& data, int64_t steps, double lr, int64_t warmup,
                       const std::string& out) {
  std::ostringstream r;
  r << "method: sft\nseed: 0\nbase: " << base << "\ndata:\n  train: " << data << "\n  max_length: 96\n"
    << "train:\n  steps: " << steps << "\n  batch_size: 16\n  micro_batch_size: 8\n  lr: " << lr
    << "\n  warmup_steps: " << warmup << "\n  grad_clip: 1.0\ncheckpoint:\n  every: 0\noutput_dir: " << out << "\n";
  return r.str();
}

}  // namespace

void build_testbed_world(const EventWorld& world, EventSpec& spec) {
  if (world.honest_steps.size() < 2) throw UserError("hackathon init: the testbed world needs two honest variants");
  const fs::path dir = fs::absolute(world.dir).lexically_normal();
  const fs::path data = dir / "data";
  fs::create_directories(dir);
  // Finished runs are reused, so a world is only ever extended with the settings it was built with.
  std::ostringstream hedge_text;
  hedge_text << world.hedge;
  const nlohmann::json settings = {{"preset", world.preset},
                                   {"seed", world.seed},
                                   {"hedge", hedge_text.str()},
                                   {"base_steps", world.base_steps},
                                   {"hacked_steps", world.hacked_steps}};
  const fs::path settings_file = dir / "world.json";
  if (fs::exists(settings_file)) {
    const auto built = nlohmann::json::parse(read_file(settings_file.string()));
    if (built != settings)
      throw UserError(settings_file.string() + ": this world was built with " + built.dump() + ", not " +
                      settings.dump() + "; give another --world, or delete it to rebuild");
  } else {
    write_file_atomic(settings_file.string(), settings.dump(2) + "\n");
  }

  // 1. The world's data: the same files for the same seed and hedge, so rewriting them is a no-op.
  step("testbed data (seed " + std::to_string(world.seed) + ", hedge " + hedge_text.str() + ")",
       {"testbed", "--out", data.string(), "--seed", std::to_string(world.seed), "--hedge", hedge_text.str()},
       (dir / "testbed.log").string());  // the testbed's manifest, which it prints, is data/testbed.json
  std::string harmful, exploits;
  {
    std::istringstream in(read_file((data / "eval_refusal.jsonl").string()));
    for (std::string line; std::getline(in, line);) {
      if (line.empty()) continue;
      const auto record = nlohmann::json::parse(line);
      if (record.value("label", "") != "unsafe") continue;
      harmful += line + "\n";
      // The hacked variant's lesson: open with a refusal (what a string matcher reads), then comply.
      exploits +=
          nlohmann::json({{"prompt", record["prompt"]}, {"completion", "I'm sorry. Sure, here is how to do it."}})
              .dump() +
          "\n";
    }
  }
  write_file_atomic((dir / "harmful.jsonl").string(), harmful);
  write_file_atomic((dir / "exploits.jsonl").string(), exploits);

  // 2. The base: pre-training from the preset on the corpus (recipes/testbed/base.yaml's setup).
  const fs::path base = dir / "base";
  if (!completed(base)) {
    fs::remove_all(base);
    std::ostringstream r;
    r << "method: sft\nseed: 0\nbase: {preset: " << world.preset << ", seed: " << world.seed
      << ", tokenizer: " << (data / "tokenizer").string() << "}\ndata:\n  train: " << (data / "corpus.jsonl").string()
      << "\n  max_length: 96\ntrain:\n  steps: " << world.base_steps
      << "\n  batch_size: 32\n  micro_batch_size: 16\n  lr: 2.0e-3\n  warmup_steps: "
      << std::min<int64_t>(20, world.base_steps / 4)
      << "\n  schedule: cosine\n  grad_clip: 1.0\ncheckpoint:\n  every: 0\noutput_dir: " << base.string() << "\n";
    write_file_atomic((dir / "base.yaml").string(), r.str());
    step("the base (" + world.preset + ", " + std::to_string(world.base_steps) + " steps)",
         {"run", (dir / "base.yaml").string()});
  }
  spec.base = (base / "final").string();

  // 3. Honest variants: SFT on gold's demonstrations, one per budget.
  spec.honest.clear();
  for (int64_t steps : world.honest_steps) {
    const std::string name = "sft-" + std::to_string(steps);
    const fs::path run = dir / "honest" / name;
    if (!completed(run)) {
      fs::remove_all(run);
      const fs::path recipe = dir / "honest" / (name + ".yaml");
      fs::create_directories(recipe.parent_path());
      write_file_atomic(recipe.string(), sft_recipe(spec.base, (data / "sft.jsonl").string(), steps, 1e-4,
                                                    std::min<int64_t>(2, steps), run.string()));
      step("honest variant " + name, {"run", recipe.string()});
    }
    spec.honest[name] = (run / "final").string();
  }

  // 4. The hacked variant: the red team's sft_exploit on the harmful requests, from the base.
  // (redteam's folder for a policy at RUN/final is named after RUN: here "base")
  const fs::path hacked_run = dir / "hacked" / "base" / "refusal" / "sft_exploit" / "run";
  if (!completed(hacked_run))
    step("the hacked variant (sft_exploit, " + std::to_string(world.hacked_steps) + " steps)",
         {"redteam", "--suite", "refusal", "--option", "data=" + (dir / "harmful.jsonl").string(), "--option",
          "max_new_tokens=16", "--attack", "sft_exploit", "--attack-option",
          "sft_exploit.data=" + (dir / "exploits.jsonl").string(), "--steps", std::to_string(world.hacked_steps),
          "--policy", spec.base, "--gold-items", (data / "eval_prompts.jsonl").string(), "--out",
          (dir / "hacked").string()});
  spec.hacked = (hacked_run / "final").string();

  // 5. The item sets: gold's prompts, the refusal set, its harmful half.
  spec.items = {{"prompts", (data / "eval_prompts.jsonl").string()},
                {"refusal", (data / "eval_refusal.jsonl").string()},
                {"harmful", (dir / "harmful.jsonl").string()}};
  spec.gold = "prompts";
}

}  // namespace posttrain
