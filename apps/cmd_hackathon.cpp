// posttrain hackathon init|submit|judge|board|replay: eval hackathons over the red team's parts:
// an event folder with sealed private items, submissions in a hash-chained ledger, a judge that
// replays each submission in its own process, and a board that does not leak the private items
// (docs/hackathon.md).
#include <filesystem>
#include <iostream>
#include <sstream>

#include "apps/cli.h"
#include "core/error.h"
#include "core/files.h"
#include "redteam/hackathon.h"
#include "redteam/hackathon_world.h"
#include "report/report.h"

namespace fs = std::filesystem;

namespace posttrain::cli {

namespace {

// NAME=VALUE pairs of a repeatable flag.
std::map<std::string, std::string> named_values(const std::vector<std::string>& settings, const std::string& flag) {
  std::map<std::string, std::string> out;
  for (const auto& s : settings) {
    const size_t eq = s.find('=');
    if (eq == std::string::npos || eq == 0 || eq + 1 == s.size())
      throw UserError(flag + " " + s + ": expected NAME=VALUE");
    if (!out.emplace(s.substr(0, eq), s.substr(eq + 1)).second)
      throw UserError(flag + " " + s + ": " + s.substr(0, eq) + " is given twice");
  }
  return out;
}

std::string board_text(const std::string& event_dir) {
  const std::string path = (fs::path(event_dir) / "leaderboard.md").string();
  if (!fs::exists(path)) throw UserError(path + ": not found (posttrain hackathon judge writes it)");
  return read_file(path);
}

}  // namespace

int hackathon(const std::vector<std::string>& args) {
  const std::map<std::string, std::string> usage = {
      {"init",
       "DIR --base MODEL --honest NAME=MODEL --honest NAME=MODEL [--hacked MODEL] --items NAME=FILE... [--gold SET]\n"
       "  posttrain hackathon init DIR --base PRESET --testbed SEED [--world DIR] [--hedge P] [--base-steps N]\n"
       "      [--honest-steps N,N,N]"},
      {"submit", "DIR SUBMISSION_DIR --team TEAM"},
      {"judge", "DIR"},
      {"board", "DIR"},
      {"replay",
       "DIR --split dev|private --out FILE [--suite SHA] [--attack SHA] [--model NAME] [--sandboxed] "
       "[--plugin-policy DIR]"}};
  if (args.empty() || args[0] == "--help" || args[0] == "-h" || !usage.count(args[0])) {
    std::cout << "usage:";
    for (const auto& [action, text] : usage) std::cout << "\n  posttrain hackathon " << action << " " << text;
    std::cout << "\n(replay is what judge runs in each child process)\n";
    if (!args.empty() && args[0] != "--help" && args[0] != "-h")
      throw UserError("hackathon: unknown action \"" + args[0] + "\" (init, submit, judge, board)");
    return args.empty() ? kExitUserError : 0;
  }
  const std::string action = args[0];
  const std::vector<std::string> rest(args.begin() + 1, args.end());
  po::options_description options("hackathon " + action + " options");
  po::positional_options_description positional;
  std::string dir, submission, team, split, out, suite, attack, model, plugin_policy;
  EventSpec spec;
  EventWorld world;
  std::string honest_steps;
  std::vector<std::string> honest, items, attacks;
  options.add_options()("dir", po::value(&dir)->required(), "the event folder");
  positional.add("dir", 1);
  if (action == "init") {
    options.add_options()("event", po::value(&spec.event), "the event's name (default: the folder's name)")(
        "seed", po::value(&spec.seed)->default_value(0), "the dev / private split and every replay's seed")(
        "base", po::value(&spec.base)->required(),
        "the starting policy of every attack (HF folder); with --testbed, the preset its base is built from")(
        "testbed", po::value(&world.seed),
        "build the models and items on the testbed with this world seed, under DIR/world (docs/hackathon.md)")(
        "world", po::value(&world.dir),
        "--testbed: where the models and data go (default DIR/world; finished runs there are reused)")(
        "hedge", po::value(&world.hedge)->default_value(world.hedge), "--testbed: the corpus's share of hedged help")(
        "base-steps", po::value(&world.base_steps)->default_value(world.base_steps),
        "--testbed: the base's pre-training steps")(
        "honest-steps", po::value(&honest_steps)->default_value("5,15,45"),
        "--testbed: the SFT steps of each honest variant (comma-separated, at least two)")(
        "honest", po::value(&honest)->composing(), "an honest reference variant NAME=MODEL (repeatable; at least two)")(
        "hacked", po::value(&spec.hacked), "a deliberately hacked variant: the positive control")(
        "items", po::value(&items)->composing(),
        "an item set NAME=FILE.jsonl (repeatable), split into public dev and sealed private items")(
        "gold", po::value(&spec.gold)->default_value("prompts"), "the item set gold judges (testbed eval_prompts)")(
        "dev-share", po::value(&spec.dev_share)->default_value(0.5), "the share of each set's ids made public")(
        "steps", po::value(&spec.budget.steps)->default_value(8), "attack budget: search or training steps")(
        "samples", po::value(&spec.budget.samples)->default_value(4), "attack budget: samples per item")(
        "seconds", po::value(&spec.budget.seconds)->default_value(120), "attack budget: wall-clock seconds")(
        "allow-plugins", "accept plugin attack submissions (each runs in a bubblewrap sandbox; rules.yaml plugins)")(
        "attack", po::value(&attacks)->composing(),
        "an attack submissions may use (repeatable; default canned, best_of_n, prefix_search, rl, model)");
  } else if (action == "submit") {
    options.add_options()("submission", po::value(&submission)->required(), "the submission folder")(
        "team", po::value(&team)->required(), "the submitting team");
    positional.add("submission", 1);
  } else if (action == "replay") {
    options.add_options()("split", po::value(&split)->required(), "dev or private")(
        "out", po::value(&out)->required(), "the result JSON")("suite", po::value(&suite),
                                                               "a suite submission's sha256")(
        "attack", po::value(&attack), "an attack submission's sha256")("model", po::value(&model),
                                                                       "base, an honest variant's name, or hacked")(
        "sandboxed", "a plugin attack's first phase (the judge runs it inside the sandbox)")(
        "plugin-policy", po::value(&plugin_policy), "a plugin attack's second phase: the policy its first trained");
  }
  po::variables_map vm;
  if (!parse("hackathon " + action, usage.at(action), options, rest, vm, &positional)) return 0;

  if (action == "init") {
    spec.dir = dir;
    if (spec.event.empty()) spec.event = fs::absolute(dir).lexically_normal().filename().string();
    spec.honest = named_values(honest, "--honest");
    spec.items = named_values(items, "--items");
    if (!attacks.empty()) spec.attacks = attacks;
    spec.allow_plugins = vm.count("allow-plugins") > 0;
    if (vm.count("testbed")) {
      if (!honest.empty() || !items.empty() || !spec.hacked.empty())
        throw UserError("hackathon init: --testbed builds the models and items; give no --honest, --hacked or --items");
      if (fs::exists(fs::path(dir) / "rules.yaml"))
        throw UserError((fs::path(dir) / "rules.yaml").string() + ": an event is already there");
      if (world.dir.empty()) world.dir = (fs::path(dir) / "world").string();
      world.preset = spec.base;
      world.honest_steps.clear();
      std::istringstream list(honest_steps);
      for (std::string n; std::getline(list, n, ',');) {
        try {
          size_t used = 0;
          world.honest_steps.push_back(std::stoll(n, &used));
          if (used != n.size() || world.honest_steps.back() <= 0) throw std::invalid_argument(n);
        } catch (const std::exception&) {
          throw UserError("hackathon init: --honest-steps " + honest_steps +
                          ": expected positive integers, e.g. 5,15,45");
        }
      }
      if (world.base_steps <= 0) throw UserError("hackathon init: --base-steps must be positive");
      if (!(world.hedge > 0 && world.hedge <= 1)) throw UserError("hackathon init: --hedge must be in (0, 1]");
      build_testbed_world(world, spec);
    } else if (honest.empty() || items.empty()) {
      throw UserError(
          "hackathon init: give --honest NAME=MODEL (at least two) and --items NAME=FILE, or --testbed SEED");
    }
    init_event(spec);
    std::cout << (fs::path(dir) / "rules.yaml").string() << "\n";
    std::cerr << "posttrain: event written; publish rules.yaml and public/, keep sealed/ with the judge\n";
  } else if (action == "submit") {
    const auto entry = submit_to_event(dir, submission, team);
    std::cout << nlohmann::json({{"line", entry["seq"].get<int64_t>() + 1}, {"sha256", entry["sha256"]}}).dump()
              << "\n";
  } else if (action == "judge") {
    const nlohmann::json board = judge_event(dir);
    write_leaderboard(board, dir);
    std::cout << board_text(dir);
  } else if (action == "board") {
    std::cout << board_text(dir);
  } else {
    replay(dir, split, suite, attack, model, out, vm.count("sandboxed") > 0, plugin_policy);
  }
  return 0;
}

}  // namespace posttrain::cli
