// Recipes: strict validation with file:line:key messages, overrides, defaults, and a resolved recipe
// that parses back to the same settings.
#include <catch2/catch.hpp>

#include "core/error.h"
#include "core/recipe.h"
#include "tests/test_util.h"

namespace {

const char* kValid = R"(method: sft
seed: 3
base: {preset: tiny, seed: 1}
data:
  train: data.jsonl
  max_length: 32
train:
  steps: 10
  batch_size: 8
  micro_batch_size: 2
  lr: 1.0e-3
)";

std::string error_of(const std::string& path, const std::vector<std::string>& overrides = {}, int world = 1) {
  try {
    posttrain::parse_recipe(path, overrides, world);
  } catch (const posttrain::UserError& e) {
    return e.what();
  }
  return "(no error)";
}

}  // namespace

TEST_CASE("a valid recipe parses with defaults filled in", "[core][recipe]") {
  test::TempDir tmp("recipe");
  test::write_text(tmp / "r.yaml", kValid);
  auto r = posttrain::parse_recipe(tmp / "r.yaml", {}, 1);
  CHECK(r.method == "sft");
  CHECK(r.seed == 3);
  CHECK(r.base.preset == "tiny");
  CHECK(r.base.seed == 1);
  CHECK(r.data.train == tmp / "data.jsonl");  // relative to the recipe's folder
  CHECK(r.train.lr == 1e-3);
  CHECK(r.train.schedule == "cosine");
  CHECK(r.checkpoint.resume == "auto");
}

TEST_CASE("one rule for relative paths: the recipe's folder in the file, the working directory on the command line",
          "[core][recipe]") {
  test::TempDir tmp("recipe-paths");
  test::fs::create_directories(tmp / "recipes/sub");
  test::write_text(tmp / "recipes/sub/r.yaml", std::string(kValid) + "output_dir: ../../runs/x\n");
  const auto written = posttrain::parse_recipe(tmp / "recipes/sub/r.yaml", {}, 1);
  CHECK(written.output_dir == tmp / "runs/x");  // like data.train and base: from the recipe's folder
  CHECK(written.data.train == tmp / "recipes/sub/data.jsonl");
  const auto overridden = posttrain::parse_recipe(tmp / "recipes/sub/r.yaml", {"output_dir=runs/y"}, 1);
  CHECK(overridden.output_dir == (test::fs::current_path() / "runs/y").string());
  std::string with_base_path = kValid;
  with_base_path.replace(with_base_path.find("{preset: tiny, seed: 1}"), 23, "../models/m");
  test::write_text(tmp / "recipes/sub/base.yaml", with_base_path);
  CHECK(posttrain::parse_recipe(tmp / "recipes/sub/base.yaml", {}, 1).base.path == tmp / "recipes/models/m");
}

TEST_CASE("recipe errors name the file, the line and the key", "[core][recipe]") {
  test::TempDir tmp("recipe-errors");
  auto write = [&](const std::string& name, const std::string& text) {
    test::write_text(tmp / name, text);
    return tmp / name;
  };
  const std::string typo = write("typo.yaml", std::string(kValid) + "  stepz: 4\n");
  CHECK(error_of(typo) == typo + ":12: train.stepz: unknown key; did you mean \"steps\"?");
  const std::string top = write("top.yaml", std::string(kValid) + "evalz: []\n");
  CHECK_THAT(error_of(top), Catch::StartsWith(top + ":12: evalz: unknown key"));
  const std::string type = write("type.yaml", std::string(kValid) + "  warmup_steps: ten\n");
  CHECK_THAT(error_of(type), Catch::StartsWith(type + ":12: train.warmup_steps has the wrong type"));
  const std::string negative = write("neg.yaml", std::string(kValid) + "  weight_decay: -1\n");
  CHECK_THAT(error_of(negative), Catch::Contains(":12: train.weight_decay must be >= 0"));
  CHECK_THAT(error_of(typo, {"train.stepz=4"}), Catch::Contains("train.stepz: unknown key"));
  const std::string ok = write("ok.yaml", kValid);
  CHECK_THAT(error_of(ok, {"train.lr=-0.1"}), Catch::Contains("train.lr must be positive"));
  CHECK_THAT(error_of(ok, {"train.micro_batch_size=3"}),
             Catch::Contains("must be a positive multiple of world_size (1) x micro_batch_size (3)"));
  CHECK_THAT(error_of(ok, {}, 3), Catch::Contains("multiple of world_size (3)"));
  CHECK_THAT(error_of(ok, {"lr"}), Catch::Contains("is not key.sub=value"));
  CHECK_THAT(error_of(ok, {"train.bogus=1"}), Catch::Contains("(command-line override): train.bogus: unknown key"));
  const std::string no_method = write("nomethod.yaml", "base: x\ndata: {train: a}\n");
  CHECK_THAT(error_of(no_method), Catch::Contains("method is required"));
  const std::string bad_yaml = write("bad.yaml", "method: sft\ntrain: [1, 2\n");
  CHECK_THAT(error_of(bad_yaml), Catch::StartsWith(bad_yaml + ":3: malformed YAML"));
  CHECK_THAT(error_of(tmp / "missing.yaml"), Catch::Contains("recipe file not found"));
  // A repeated key would keep the first value in silence: refused at the repeat's line, top level
  // and nested.
  const std::string twice = write("twice.yaml", std::string(kValid) + "seed: 4\n");
  CHECK(error_of(twice) == twice + ":12: duplicate key seed (each key may appear once; the values would disagree)");
  const std::string nested = write("nested.yaml", std::string(kValid) + "  steps: 20\n");
  CHECK_THAT(error_of(nested), Catch::StartsWith(nested + ":12: duplicate key train.steps"));
  // .nan and .inf are YAML numbers but no setting: refused when read, not at step 2.
  CHECK_THAT(error_of(ok, {"train.lr=.nan"}), Catch::Contains("train.lr must be a finite number"));
  CHECK_THAT(error_of(ok, {"train.weight_decay=.inf"}), Catch::Contains("train.weight_decay must be a finite number"));
  // A folder or a huge file is not a recipe.
  CHECK_THAT(error_of(tmp.str()), Catch::Contains("is a folder, not a recipe file"));
  const std::string huge = write("huge.yaml", std::string(kValid) + "# " + std::string(17u << 20, 'x') + "\n");
  CHECK_THAT(error_of(huge), Catch::Contains("a recipe file may be at most 16 MiB"));
  // Found by tests/fuzz/fuzz_recipe.cpp (it was an uncaught yaml-cpp exception): a defaults entry
  // that is not a file name, and a value of another shape read deep inside.
  const std::string defaults = write("defaults.yaml", "defaults: [{batch_size: 4}, sft.yaml]\nmethod: sft\n");
  CHECK(error_of(defaults) == defaults + ":1: defaults must be a list of recipe files");
  const std::string shape = write("shape.yaml", std::string(kValid) + "evals:\n  - suite: [mc]\n");
  CHECK_THAT(error_of(shape), Catch::StartsWith(shape + ":"));
}

TEST_CASE("overrides and defaults: later wins, recipe over its defaults, command line over all", "[core][recipe]") {
  test::TempDir tmp("recipe-defaults");
  test::write_text(tmp / "base.yaml",
                   "method: sft\nbase: {preset: tiny}\ndata: {train: d.jsonl}\ntrain: {steps: 7, lr: 0.5, batch_size: "
                   "4, micro_batch_size: 4}\n");
  test::write_text(tmp / "r.yaml", "defaults: [base.yaml]\ntrain: {lr: 0.25}\n");
  auto r = posttrain::parse_recipe(tmp / "r.yaml", {}, 1);
  CHECK(r.train.steps == 7);
  CHECK(r.train.lr == 0.25);
  auto o = posttrain::parse_recipe(tmp / "r.yaml", {"train.lr=0.125", "seed=9", "data.max_length=99"}, 1);
  CHECK(o.train.lr == 0.125);
  CHECK(o.seed == 9);
  CHECK(o.data.max_length == 99);
  CHECK(o.train.steps == 7);
  test::write_text(tmp / "cycle.yaml", "defaults: [cycle.yaml]\n");
  CHECK_THAT(error_of(tmp / "cycle.yaml"), Catch::Contains("include cycle"));
}

TEST_CASE("the resolved recipe is itself a recipe with the same settings", "[core][recipe]") {
  test::TempDir tmp("recipe-resolved");
  test::write_text(tmp / "r.yaml", std::string(kValid) + "  beta2: 0.999\n  eps: 3.0e-7\nsft: {}\n");
  auto r = posttrain::parse_recipe(tmp / "r.yaml", {"train.lr=0.0003"}, 1);
  test::write_text(tmp / "resolved.yaml", posttrain::resolved_recipe_yaml(r));
  CHECK(test::read_text(tmp / "resolved.yaml").find("lr: 0.0003\n") != std::string::npos);
  auto again = posttrain::parse_recipe(tmp / "resolved.yaml", {}, 1);
  CHECK(posttrain::resolved_recipe_yaml(again) == posttrain::resolved_recipe_yaml(r));
  CHECK(again.train.lr == r.train.lr);
  CHECK(again.train.eps == r.train.eps);
  CHECK(again.data.train == r.data.train);
}
