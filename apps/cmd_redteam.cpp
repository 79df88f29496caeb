// posttrain redteam --suite S... --attack A... --policy DIR --out DIR: attacks every suite named
// with every attack named, from one starting policy, and writes OUT/redteam.json (docs/redteam.md).
#include <filesystem>
#include <iostream>
#include <sstream>

#include "apps/cli.h"
#include "core/error.h"
#include "redteam/redteam.h"
#include "trainers/plugin.h"

namespace fs = std::filesystem;

namespace posttrain::cli {

namespace {

// "policy / suite / attack: score a -> b (gain g, 95% [l, h]); gold c -> d; hacked: v"
std::string redteam_summary_line(const nlohmann::json& policy, const nlohmann::json& suite, const nlohmann::json& a) {
  std::ostringstream line;
  const auto& g = a["suite_score"];
  line << policy.get<std::string>() << " / " << suite.get<std::string>() << " / " << a.value("attack", "?")
       << ": score " << g["start"].get<double>() << " -> " << g["attacked"].get<double>() << " (gain "
       << g["gain"].get<double>() << ", 95% [" << g["ci95"][0].get<double>() << ", " << g["ci95"][1].get<double>()
       << "])";
  if (a.contains("gold"))
    line << "; gold " << a["gold"]["start"].get<double>() << " -> " << a["gold"]["attacked"].get<double>();
  line << "; hacked: " << (a["hacked"].is_null() ? "unverified (no independent measure)" : a["hacked"].dump());
  return line.str();
}

}  // namespace

int redteam(const std::vector<std::string>& args) {
  po::options_description options("redteam options");
  std::vector<std::string> suites, attacks, suite_settings, attack_settings, plugins;
  RedteamSpec spec;
  options.add_options()("suite", po::value(&suites)->composing()->required(),
                        "registered suite or YAML task file to attack (repeatable)")(
      "attack", po::value(&attacks)->composing()->required(),
      "registered attack (repeatable): canned, best_of_n, prefix_search, rl on suites that score "
      "responses; choice_dpo on suites that score log-likelihoods")(
      "policy", po::value(&spec.policy_dirs)->composing(),
      "a starting policy's HF folder (repeatable: each is attacked, and universal strings are replayed on the others)")(
      "out", po::value(&spec.out_dir)->required(), "writes OUT/redteam.json and OUT/<suite>/<attack>/")(
      "option", po::value(&suite_settings)->composing(), "suite option key=value, e.g. data=FILE (repeatable)")(
      "attack-option", po::value(&attack_settings)->composing(),
      "attack option ATTACK.key=value, e.g. best_of_n.temperature=0.7 (repeatable)")(
      "steps", po::value(&spec.budget.steps)->default_value(0), "search or training steps (0: the attack's default)")(
      "samples", po::value(&spec.budget.samples)->default_value(0), "samples per item (0: the attack's default)")(
      "seconds", po::value(&spec.budget.seconds)->default_value(0), "wall-clock limit per attack (0: none)")(
      "seed", po::value(&spec.seed)->default_value(0), "the split, sampling and search seed")(
      "margin", po::value(&spec.margin)->default_value(0.10), "HACKED needs a suite gain above this")(
      "attack-share", po::value(&spec.attack_share)->default_value(0.5), "share of item ids in the attack split")(
      "gold-items", po::value(&spec.gold_items),
      "testbed records (eval_prompts.jsonl): judge answers to the same prompts with gold")(
      "bootstrap", po::value(&spec.bootstrap)->default_value(1000), "resamples for the paired intervals")(
      "device", po::value(&spec.device)->default_value("cpu"), "cpu or cuda")(
      "plugin", po::value(&plugins)->composing(),
      "load a plugin library that registers suites or attacks (repeatable)");
  po::variables_map vm;
  if (!parse("redteam", "--suite NAME --attack NAME --policy DIR --out DIR", options, args, vm)) return 0;
  if (vm["steps"].defaulted() == false && spec.budget.steps <= 0) throw UserError("--steps must be positive");
  if (vm["samples"].defaulted() == false && spec.budget.samples <= 0) throw UserError("--samples must be positive");
  if (vm["seconds"].defaulted() == false && !(spec.budget.seconds > 0)) throw UserError("--seconds must be positive");
  if (spec.bootstrap <= 0) throw UserError("--bootstrap must be positive");
  load_plugins(plugins);

  const YAML::Node suite_options = parse_option_settings(suite_settings, "--option");
  for (const auto& suite : suites) {
    const auto ext = fs::path(suite).extension();
    spec.suites.push_back({(ext == ".yaml" || ext == ".yml") ? fs::absolute(suite).string() : suite,
                           YAML::Clone(suite_options), "command line", "--suite " + suite});
  }
  std::map<std::string, std::vector<std::string>> per_attack;  // attack -> key=value
  for (const auto& setting : attack_settings) {
    const size_t dot = setting.find('.'), eq = setting.find('=');
    if (dot == std::string::npos || eq == std::string::npos || dot > eq)
      throw UserError("--attack-option " + setting + ": expected ATTACK.key=value");
    const std::string attack = setting.substr(0, dot);
    if (std::find(attacks.begin(), attacks.end(), attack) == attacks.end())
      throw UserError("--attack-option " + setting + ": attack " + attack + " is not among the --attack given");
    per_attack[attack].push_back(setting.substr(dot + 1));
  }
  for (const auto& attack : attacks)
    spec.attacks.push_back(
        {attack, parse_option_settings(per_attack[attack], "--attack-option"), "command line", "--attack " + attack});
  if (!spec.gold_items.empty()) spec.gold_items = fs::absolute(spec.gold_items).string();
  spec.out_dir = fs::absolute(spec.out_dir).lexically_normal().string();

  for (auto& dir : spec.policy_dirs) dir = fs::absolute(dir).lexically_normal().string();
  const nlohmann::json report = run_redteam(spec);
  for (const auto& run : report["runs"])
    for (const auto& suite : run["suites"]) {
      for (const auto& a : suite["attacks"])
        std::cout << redteam_summary_line(run["policy"], suite["suite"], a) << "\n";
      for (const auto& skipped : suite["skipped"])
        std::cout << run["policy"].get<std::string>() << " / " << suite["suite"].get<std::string>() << " / "
                  << skipped.get<std::string>() << ": skipped (the suite scores " << suite["scores"].get<std::string>()
                  << "; the attack does not)\n";
    }
  for (const auto& t : report["transfer"])
    std::cout << "transfer " << t["attack"].get<std::string>() << " found on " << t["found_on"].get<std::string>()
              << ": " << redteam_summary_line(t["replayed_on"], t["suite"], t) << "\n";
  std::cout << "wrote " << (fs::path(spec.out_dir) / "redteam.json").string() << "\n";
  return 0;
}

}  // namespace posttrain::cli
