// Variant matrices and the report: a matrix expands into recipes that differ only in the method; a
// difference outside the method section (here a learning-rate override) is caught by the control
// checks; the report lists every variant and suite and renders in headless Chromium.
#include <catch2/catch.hpp>

#include <filesystem>
#include <set>

#include "core/error.h"
#include "core/recipe.h"
#include "core/variants.h"
#include "tests/html_check.h"
#include "tests/test_util.h"

using namespace posttrain;
namespace fs = std::filesystem;

namespace {

std::string kind_of(const std::string& method) {
  if (method == "sft") return "sft";
  if (method == "dpo" || method == "reward") return "preference";
  if (method == "kto") return "unpaired";
  return "";
}

void no_plugins(const std::vector<std::string>&) {}

std::string matrix_text(const std::string& out_dir, const std::string& extra_variant) {
  const std::string data = test::source_dir() + "/recipes/data/";
  return "name: test matrix\noutput_dir: " + out_dir +
         "\nbase: {preset: tiny, seed: 0}\nseed: 3\n"
         "data: {sft: " +
         data + "sft_demo_chat.jsonl, preference: " + data +
         "dpo_demo.jsonl, max_length: 48}\n"
         "train: {steps: 3, batch_size: 4, micro_batch_size: 2, lr: 3.0e-3}\n"
         "evals:\n  - {suite: mc, data: " +
         test::source_dir() +
         "/recipes/evals/arith_mc.jsonl, limit: 6, perturbations: []}\n"
         "variants:\n  - {name: sft, method: sft}\n  - {name: dpo, method: dpo, dpo: {beta: 0.2}}\n" +
         extra_variant;
}

}  // namespace

TEST_CASE("a matrix expands into recipes that differ only in the method", "[variants]") {
  test::TempDir tmp("matrix");
  test::write_text(tmp / "m.yaml", matrix_text(tmp / "out", ""));
  const Matrix m = parse_matrix(tmp / "m.yaml", no_plugins, kind_of);
  REQUIRE(m.variants.size() == 2);
  CHECK(m.variants[0].data_kind == "sft");
  CHECK(m.variants[1].data_kind == "preference");
  for (const auto& v : m.variants) {
    test::write_text(tmp / (v.name + ".yaml"), v.recipe_yaml);
    const Recipe r = parse_recipe(tmp / (v.name + ".yaml"), {}, 1);
    CHECK(r.method == v.method);
    CHECK(r.seed == 3);
    CHECK(r.train.steps == 3);
    CHECK(r.output_dir == tmp / ("out/" + v.name));
    CHECK(r.evals.size() == 1);
    CHECK(r.data.train == m.data_files.at(v.data_kind));
  }
  CHECK(YAML::Load(m.variants[1].recipe_yaml)["dpo"]["beta"].as<double>() == 0.2);

  // A variant holds only its name, method, the method's section and overrides.
  test::write_text(tmp / "bad.yaml", matrix_text(tmp / "out", "  - {name: x, method: sft, train: {lr: 1.0}}\n"));
  CHECK(test::user_error_of([&] {
          parse_matrix(tmp / "bad.yaml", no_plugins, kind_of);
        }).find("variants[2].train: unknown key") != std::string::npos);
  test::write_text(tmp / "kto.yaml", matrix_text(tmp / "out", "  - {name: k, method: kto}\n"));
  CHECK(test::user_error_of([&] {
          parse_matrix(tmp / "kto.yaml", no_plugins, kind_of);
        }).find("variants[2].method kto trains on unpaired data: add data.unpaired") != std::string::npos);
  test::write_text(tmp / "twice.yaml", matrix_text(tmp / "out", "  - {name: sft, method: sft}\n"));
  CHECK(test::user_error_of([&] { parse_matrix(tmp / "twice.yaml", no_plugins, kind_of); }).find("is used twice") !=
        std::string::npos);
}

TEST_CASE("seeds: every variant once per seed; sweep: one variant per value of a method option", "[variants]") {
  test::TempDir tmp("matrix-seeds");
  std::string text = matrix_text(tmp / "out",
                                 "  - {name: d, method: dpo, dpo: {label_smoothing: 0.1}, sweep: "
                                 "{dpo.beta: [0.03, 0.3]}}\n");
  text.replace(text.find("seed: 3"), 7, "seeds: [4, 7]");
  test::write_text(tmp / "m.yaml", text);
  const Matrix m = parse_matrix(tmp / "m.yaml", no_plugins, kind_of);
  CHECK(m.replicated);
  CHECK(m.seeds == std::vector<uint64_t>{4, 7});
  std::vector<std::string> runs;
  for (const auto& v : m.variants) runs.push_back(v.run_name);
  CHECK(runs == std::vector<std::string>{"sft/seed-4", "sft/seed-7", "dpo/seed-4", "dpo/seed-7", "d-beta-0.03/seed-4",
                                         "d-beta-0.03/seed-7", "d-beta-0.3/seed-4", "d-beta-0.3/seed-7"});
  const Variant& point = m.variants[7];
  CHECK(point.name == "d-beta-0.3");
  CHECK(point.seed == 7);
  CHECK(point.sweep_of == "d");
  CHECK(point.sweep_key == "dpo.beta");
  CHECK(point.sweep_value == "0.3");
  const YAML::Node recipe = YAML::Load(point.recipe_yaml);
  CHECK(recipe["seed"].as<uint64_t>() == 7);
  CHECK(recipe["dpo"]["beta"].as<double>() == 0.3);
  CHECK(recipe["dpo"]["label_smoothing"].as<double>() == 0.1);
  CHECK(recipe["output_dir"].as<std::string>() == tmp / "out/d-beta-0.3/seed-7");
  const auto layout = matrix_layout(m);
  CHECK(layout["runs"][7]["sweep"]["value"] == "0.3");
  CHECK(run_name_of(tmp / "out/d-beta-0.3/seed-7") == "d-beta-0.3/seed-7");
  CHECK(run_name_of(tmp / "out/sft") == "sft");

  // ${seed} in a method option is the run's seed.
  test::write_text(tmp / "s.yaml",
                   matrix_text(tmp / "out", "") + "  - {name: k, method: dpo, dpo: {loss: \"${seed}\"}}\n");
  const Matrix with_seed = parse_matrix(tmp / "s.yaml", no_plugins, kind_of);
  CHECK(YAML::Load(with_seed.variants.back().recipe_yaml)["dpo"]["loss"].as<std::string>() == "3");

  const auto error_of = [&](const std::string& matrix) {
    test::write_text(tmp / "bad.yaml", matrix);
    return test::user_error_of([&] { parse_matrix(tmp / "bad.yaml", no_plugins, kind_of); });
  };
  std::string both = matrix_text(tmp / "out", "");
  both.replace(both.find("seed: 3"), 7, "seed: 3\nseeds: [1]");
  CHECK(error_of(both).find("not both") != std::string::npos);
  std::string twice = matrix_text(tmp / "out", "");
  twice.replace(twice.find("seed: 3"), 7, "seeds: [1, 1]");
  CHECK(error_of(twice).find("lists a seed twice") != std::string::npos);
  CHECK(error_of(matrix_text(tmp / "out", "  - {name: x, method: dpo, sweep: {train.lr: [0.1, 0.2]}}\n"))
            .find("varies an option of the method's own section") != std::string::npos);
  CHECK(error_of(matrix_text(tmp / "out", "  - {name: x, method: dpo, sweep: {dpo.beta: 0.1}}\n"))
            .find("must be one option and its values") != std::string::npos);
}

TEST_CASE("controls: replicates that differ in anything but the seed are caught", "[variants]") {
  test::TempDir tmp("controls-replicates");
  // Run folders as posttrain writes them (manifest and resolved recipe), made by hand: the checker
  // reads nothing else.
  const auto make_run = [&](const std::string& run, int seed, const std::string& method, double lr) {
    const std::string dir = tmp / ("out/" + run);
    test::fs::create_directories(dir);
    test::write_text(dir + "/manifest.json",
                     nlohmann::json({{"status", "completed"},
                                     {"seed", seed},
                                     {"method", method},
                                     {"base", {{"sha256", "b"}}},
                                     {"budget", {{"steps", 3}}},
                                     {"data", {{"train", "/d/" + method + ".jsonl"}, {"sha256", method}}}})
                         .dump());
    test::write_text(dir + "/recipe.resolved.yaml", "method: " + method + "\nseed: " + std::to_string(seed) +
                                                        "\noutput_dir: " + dir + "\ntrain: {lr: " + std::to_string(lr) +
                                                        "}\n" + method + ": {beta: 0.1}\n");
    return dir;
  };
  std::vector<std::string> dirs = {make_run("sft/seed-0", 0, "sft", 0.1), make_run("sft/seed-1", 1, "sft", 0.1),
                                   make_run("dpo/seed-0", 0, "dpo", 0.1), make_run("dpo/seed-1", 1, "dpo", 0.1)};
  const auto clean = check_controls(dirs, nullptr);
  INFO(clean.dump(1));
  CHECK(clean["controlled"].get<bool>());
  std::set<std::string> names;
  for (const auto& c : clean["checks"]) names.insert(c["check"].get<std::string>());
  CHECK(names.count("seed 0: same base") == 1);
  CHECK(names.count("seed 1: configs differ only in the method section") == 1);
  CHECK(names.count("replicates of dpo differ only in the seed") == 1);
  CHECK(names.count("same seed") == 0);  // seeds differ by design

  // One replicate with another learning rate: both the seed-1 group and the replicates catch it.
  dirs[3] = make_run("dpo/seed-1", 1, "dpo", 0.2);
  const auto tampered = check_controls(dirs, nullptr);
  CHECK_FALSE(tampered["controlled"].get<bool>());
  bool replicate_caught = false;
  for (const auto& d : tampered["differences"])
    if (d.value("variant", "") == "dpo" && d["key"] == "train.lr") replicate_caught = true;
  CHECK(replicate_caught);
  // A replicate whose method options differ: the per-seed check cannot see it (the method section is
  // the variant's own), the replicate check does.
  dirs[3] = make_run("dpo/seed-1", 1, "dpo", 0.1);
  test::write_text(dirs[3] + "/recipe.resolved.yaml",
                   "method: dpo\nseed: 1\noutput_dir: " + dirs[3] + "\ntrain: {lr: 0.100000}\ndpo: {beta: 0.5}\n");
  const auto options = check_controls(dirs, nullptr);
  CHECK_FALSE(options["controlled"].get<bool>());
  bool options_caught = false;
  for (const auto& d : options["differences"])
    if (d.value("variant", "") == "dpo" && d["key"] == "dpo.beta") options_caught = true;
  CHECK(options_caught);
}

TEST_CASE("a typo in a later variant's method options stops the matrix before any variant trains", "[variants]") {
  test::TempDir tmp("matrix-typo");
  test::write_text(tmp / "m.yaml", matrix_text(tmp / "out", "  - {name: late, method: dpo, dpo: {betta: 0.2}}\n"));
  const std::string bin = "POSTTRAIN_CACHE=" + test::test_cache_dir() + " " + test::posttrain_bin();
  auto r = test::run(bin + " variants " + tmp / "m.yaml");
  INFO(r.output);
  CHECK(r.exit_code == 2);
  CHECK(r.output.find("late.yaml:") != std::string::npos);
  CHECK(r.output.find("dpo.betta") != std::string::npos);
  CHECK_FALSE(fs::exists(tmp / "out/sft/manifest.json"));  // the first variant never started
  // A reward model that an earlier variant will train need not exist yet to be checked.
  test::write_text(tmp / "rl.yaml", matrix_text(tmp / "out2",
                                                "  - {name: ppo, method: ppo, ppo: {rewards: [{name: reward_model, "
                                                "model: \"${output_dir}/rm/final\"}], kl_coeff: 1}}\n"));
  std::string rl_matrix = test::read_text(tmp / "rl.yaml");
  rl_matrix.replace(rl_matrix.find("max_length: 48"), 0,
                    "prompts: " + test::source_dir() + "/recipes/data/bandit_prompts.jsonl, ");
  test::write_text(tmp / "rl.yaml", rl_matrix);
  r = test::run(bin + " variants " + tmp / "rl.yaml");
  CHECK(r.exit_code == 2);
  CHECK(r.output.find("ppo.kl_coeff") != std::string::npos);
  CHECK(r.output.find("rm/final") == std::string::npos);  // not a missing-folder error
}

TEST_CASE("variants run, an accidental difference is caught, and the report renders", "[variants][report]") {
  test::TempDir tmp("variants");
  test::write_text(tmp / "m.yaml",
                   matrix_text(tmp / "out", "  - {name: dpo-lr, method: dpo, overrides: [train.lr=1.0e-3]}\n"));
  const std::string bin = "POSTTRAIN_CACHE=" + test::test_cache_dir() + " " + test::posttrain_bin();
  auto r = test::run(bin + " variants " + tmp / "m.yaml");
  INFO(r.output);
  REQUIRE(r.exit_code == 0);
  CHECK(r.output.find("CONTROL VIOLATION: train.lr differs: dpo=0.003 dpo-lr=0.001 sft=0.003") != std::string::npos);
  const auto controls = nlohmann::json::parse(test::read_text(tmp / "out/controls.json"));
  CHECK_FALSE(controls["controlled"].get<bool>());
  REQUIRE(controls["differences"].size() == 1);
  CHECK(controls["differences"][0]["key"] == "train.lr");
  for (const auto& c : controls["checks"])
    if (c["check"] != "configs differ only in the method section") CHECK(c["passed"].get<bool>());

  // Without the odd one out, the same runs are controlled.
  const auto clean = check_controls({tmp / "out/sft", tmp / "out/dpo"}, nullptr);
  CHECK(clean["controlled"].get<bool>());
  // A run on another base is caught.
  auto manifest = nlohmann::json::parse(test::read_text(tmp / "out/dpo/manifest.json"));
  manifest["base"]["sha256"] = "0000";
  test::write_text(tmp / "out/dpo/manifest.json", manifest.dump());
  const auto tampered = check_controls({tmp / "out/sft", tmp / "out/dpo"}, nullptr);
  CHECK_FALSE(tampered["controlled"].get<bool>());
  CHECK_FALSE(tampered["checks"][1]["passed"].get<bool>());  // "same base"
  CHECK(tampered["checks"][1]["check"] == "same base");

  // Completed variants are not run again.
  r = test::run(bin + " variants " + tmp / "m.yaml" + " --only sft");
  CHECK(r.exit_code == 0);
  CHECK(r.output.find("variant sft already completed") != std::string::npos);

  const std::string md = test::read_text(tmp / "out/report.md");
  for (const char* name : {"| sft |", "| dpo |", "| dpo-lr |", " mc |", "NOT CONTROLLED", "`train.lr`"})
    CHECK(md.find(name) != std::string::npos);
  const std::string html = test::read_text(tmp / "out/report.html");
  CHECK(html.find("<svg") != std::string::npos);
  test::check_self_contained(html);
  for (const char* name : {"sft", "dpo-lr", ">mc ("}) CHECK(html.find(name) != std::string::npos);

  // posttrain report over run folders does the same without a matrix.
  r = test::run(bin + " report " + tmp / "out/sft" + " " + tmp / "out/dpo-lr" + " --out " + tmp / "adhoc");
  INFO(r.output);
  REQUIRE(r.exit_code == 0);
  CHECK(test::read_text(tmp / "adhoc/report.md").find("| dpo-lr |") != std::string::npos);

  // kept in the test cache for people to look at
  test::check_renders(tmp / "out/report.html", test::test_cache_dir() + "/report-screenshot.png", 20000);
}

TEST_CASE("a matrix folder's runs come in matrix.json's order, else sorted", "[variants]") {
  test::TempDir tmp("run-order");
  for (const char* run : {"zeta/seed-2", "zeta/seed-10", "alpha/seed-2", "alpha/seed-10", "extra"}) {
    fs::create_directories(tmp / run);
    test::write_text(tmp / (std::string(run) + "/manifest.json"), "{}");
  }
  const auto names = [&] {
    std::vector<std::string> out;
    for (const auto& dir : posttrain::matrix_run_dirs(tmp.str())) out.push_back(posttrain::run_name_of(dir));
    return out;
  };
  // Without matrix.json: the alphabet (seed-10 before seed-2).
  CHECK(names() == std::vector<std::string>{"alpha/seed-10", "alpha/seed-2", "extra", "zeta/seed-10", "zeta/seed-2"});
  // With it: the matrix's variants and seeds as listed; a run it does not list goes last.
  test::write_text(tmp / "matrix.json", R"({"runs": [{"run": "zeta/seed-2"}, {"run": "zeta/seed-10"},
                                                   {"run": "alpha/seed-2"}, {"run": "alpha/seed-10"}]})");
  CHECK(names() == std::vector<std::string>{"zeta/seed-2", "zeta/seed-10", "alpha/seed-2", "alpha/seed-10", "extra"});
}

TEST_CASE("lora in a matrix is shared setup; a variant that changes it is reported by the controls",
          "[variants][lora]") {
  test::TempDir tmp("matrix-lora");
  std::string text = matrix_text(tmp / "out", "  - {name: dpo-r8, method: dpo, overrides: [lora.rank=8]}\n");
  text.replace(text.find("evals:\n"), 7, "lora: {rank: 4, alpha: 8}\nevals:\n");
  test::write_text(tmp / "m.yaml", text);
  const Matrix m = parse_matrix(tmp / "m.yaml", no_plugins, kind_of);
  REQUIRE(m.variants.size() == 3);
  std::vector<std::string> run_dirs;
  for (const auto& v : m.variants) {
    test::write_text(tmp / (v.name + ".yaml"), v.recipe_yaml);
    const Recipe r = parse_recipe(tmp / (v.name + ".yaml"), {}, 1);
    CHECK(r.lora.rank == (v.name == "dpo-r8" ? 8 : 4));
    CHECK(r.lora.alpha == 8);
    // A finished run folder as far as the controls read it: its resolved recipe and manifest.
    const std::string dir = tmp / ("runs/" + v.name);
    fs::create_directories(dir);
    test::write_text(dir + "/recipe.resolved.yaml", resolved_recipe_yaml(r));
    test::write_text(dir + "/manifest.json", R"({"status": "completed"})");
    run_dirs.push_back(dir);
  }
  const auto controls = check_controls(run_dirs, nullptr);
  REQUIRE(controls["differences"].size() == 1);
  CHECK(controls["differences"][0]["key"] == "lora.rank");
  CHECK(controls["differences"][0]["values"]["dpo-r8"] == "8");
  CHECK(controls["differences"][0]["values"]["sft"] == "4");
  const auto same = check_controls({run_dirs[0], run_dirs[1]}, nullptr);
  CHECK(same["differences"].empty());
}
