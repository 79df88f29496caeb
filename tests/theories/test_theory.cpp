// Theories end to end through the CLI: a theory file validated against its matrix and the
// assumptions registry; registered as a salted commitment and revealed; a changed file, a wrong
// salt, an edited ledger line: each named; post hoc registrations flagged; and scores from run
// folders (made by hand, with per-item scores whose outcomes are known) equal the hand-worked values
// and reproduce exactly.
#include <catch2/catch.hpp>

#include <cmath>
#include <map>
#include <sstream>

#include "tests/test_util.h"

namespace {

struct Fixture {
  test::TempDir tmp{"theory"};
  std::string bin = test::posttrain_bin();
  Fixture() {
    test::write_text(tmp / "assumptions.yaml",
                     "- {id: proxy-biased, statement: the proxy reward prefers longer answers}\n"
                     "- {id: online-amplifies, statement: on-policy sampling finds what the proxy pays for}\n");
    test::write_text(tmp / "m.yaml", "name: m\noutput_dir: " + tmp / "out" +
                                         "\nbase: {preset: tiny, seed: 0}\nseeds: [0, 1]\n"
                                         "data: {sft: d.jsonl, preference: p.jsonl}\n"
                                         "evals:\n  - {suite: gold, data: e.jsonl}\n"
                                         "variants:\n  - {name: sft, method: sft}\n  - {name: dpo, method: dpo}\n"
                                         "  - {name: dpo2, method: dpo, dpo: {beta: 0.3}}\n");
  }
  std::string theory(const std::string& predictions, const std::string& assumptions = "[proxy-biased]") const {
    return "id: t1\ntitle: DPO keeps more gold\nstatement: offline preference optimisation keeps gold\n"
           "authors: [A]\nmatrix: m.yaml\nassumptions: " +
           assumptions + "\npredictions:\n" + predictions;
  }
  test::CommandResult cli(const std::string& args) const {
    return test::run(bin + " theory " + args + " --ledger " + tmp / "ledger.jsonl");
  }
  // A completed run folder of `variant` at `seed` whose gold summary has these per-item scores.
  // The runs land: dpo right on every item, sft on none, dpo2 on half, at both seeds.
  void runs_land() const {
    for (int seed : {0, 1}) {
      run("sft", seed, std::vector<double>(20, 0.0));
      run("dpo", seed, std::vector<double>(20, 1.0));
      std::vector<double> half(20, 0.0);
      for (size_t i = 0; i < 10; ++i) half[i] = 1.0;
      run("dpo2", seed, half);
    }
  }
  // `logged`: train/reward's last value in its metrics.jsonl (an earlier line logs another value).
  void run(const std::string& variant, int seed, const std::vector<double>& scores, double logged = 0,
           const std::string& recipe = "method: dpo\ndpo: {beta: 0.1}\n") const {
    const std::string dir = tmp / ("out/" + variant + "/seed-" + std::to_string(seed));
    test::fs::create_directories(dir + "/evals");
    test::write_text(
        dir + "/manifest.json",
        nlohmann::json({{"status", "completed"}, {"seed", seed}, {"method", variant == "sft" ? "sft" : "dpo"}}).dump());
    test::write_text(dir + "/recipe.resolved.yaml", recipe);
    test::write_text(dir + "/metrics.jsonl", "{\"step\": 1, \"train/reward\": -5}\n{\"step\": 2, \"train/reward\": " +
                                                 std::to_string(logged) + "}\n");
    std::vector<std::string> ids;
    for (size_t i = 0; i < scores.size(); ++i) ids.push_back("q" + std::to_string(i));
    test::write_text(
        dir + "/evals/gold.json",
        nlohmann::json(
            {{"primary", "gold"},
             {"item_scores", {{"ids", ids}, {"scores", scores}, {"groups", std::vector<int>(scores.size(), 0)}}}})
            .dump());
  }
};

// The JSON line a command printed on stdout (stderr's lines may come before it).
nlohmann::json json_line(const std::string& output) {
  std::istringstream lines(output);
  for (std::string line; std::getline(lines, line);)
    if (!line.empty() && line[0] == '{') return nlohmann::json::parse(line);
  return nullptr;
}

const std::string kCompare =
    "  - {id: dpo-over-sft, compare: {metric: gold, better: dpo, worse: sft}, probability: 0.8}\n";

}  // namespace

TEST_CASE("a theory is validated against its matrix and the assumptions registry", "[theories]") {
  Fixture f;
  const auto check = [&](const std::string& text, const std::string& message) {
    test::write_text(f.tmp / "bad.yaml", text);
    const auto r = f.cli("register " + f.tmp / "bad.yaml" + " --assumptions " + f.tmp / "assumptions.yaml");
    INFO(r.output);
    CHECK(r.exit_code == 2);
    CHECK(r.output.find(message) != std::string::npos);
  };
  check(f.theory("  - {id: x, compare: {metric: gold, better: ppo, worse: sft}, probability: 0.8}\n"),
        "bad.yaml:8: predictions[0].compare.better \"ppo\" is not a variant of");
  check(f.theory("  - {id: x, compare: {metric: refusal, better: dpo, worse: sft}, probability: 0.8}\n"),
        "predictions[0].compare.metric \"refusal\" is not an eval suite of the matrix (its suites: gold;");
  check(f.theory("  - {id: x, compare: {metric: gold, better: dpo, worse: sft}, probability: 1.0}\n"),
        "predictions[0].probability must be strictly between 0 and 1");
  check(f.theory(kCompare, "[proxy-biased, no-such]"), "assumptions \"no-such\" is not in the registry");
  check(f.theory("  - {id: x, compare: {metric: gold, better: dpo, worse: sft}, probabilty: 0.8}\n"),
        "predictions[0].probabilty: unknown key; did you mean \"probability\"?");
  check(f.theory("  - {id: x, ranking: {metric: gold, order: [dpo, sft, dpo]}}\n"), "\"dpo\" is listed twice");
  // A new method the matrix does not hold yet is allowed when the prediction declares it.
  test::write_text(f.tmp / "new.yaml",
                   f.theory("  - {id: x, new_variant: {name: ipo, method: dpo, dpo: {loss: ipo}}, compare: {metric: "
                            "gold, better: ipo, worse: dpo}, probability: 0.6}\n"));
  CHECK(f.cli("register " + f.tmp / "new.yaml" + " --assumptions " + f.tmp / "assumptions.yaml").exit_code == 0);
}

TEST_CASE("register, reveal, review and score: hand-worked outcomes, tamper and post hoc detected", "[theories]") {
  Fixture f;
  test::write_text(
      f.tmp / "t1.yaml",
      f.theory(kCompare +
               "  - {id: sft-range, interval: {metric: gold, variant: sft, low: -0.1, high: 0.3}, probability: 0.7}\n"
               "  - {id: order, ranking: {metric: gold, order: [sft, dpo, dpo2]}}\n"
               "  - {id: dpo2-over-dpo, compare: {metric: gold, better: dpo2, worse: dpo}, probability: 0.6}\n"));
  const std::string assumptions = " --assumptions " + f.tmp / "assumptions.yaml";
  auto r = f.cli("register " + f.tmp / "t1.yaml" + assumptions);
  INFO(r.output);
  REQUIRE(r.exit_code == 0);
  const auto registered = json_line(r.output);
  CHECK(registered["post_hoc"] == false);
  const std::string salt = registered["salt"];
  CHECK(f.cli("register " + f.tmp / "t1.yaml" + assumptions).output.find("already registered (line 1)") !=
        std::string::npos);

  f.runs_land();
  // A second theory registered now names variants that have run: post hoc.
  std::string late = f.theory(kCompare, "[proxy-biased, online-amplifies]");
  late.replace(late.find("id: t1"), 6, "id: t2");
  test::write_text(f.tmp / "t2.yaml", late);
  r = f.cli("register " + f.tmp / "t2.yaml" + assumptions);
  REQUIRE(r.exit_code == 0);
  CHECK(json_line(r.output)["post_hoc"] == true);
  const std::string salt2 = json_line(r.output)["salt"];

  // A reveal of a changed file, or with another salt, does not match the commitment.
  const std::string original = test::read_text(f.tmp / "t1.yaml");
  std::string changed = original;
  changed.replace(changed.find("probability: 0.8"), 16, "probability: 0.9");
  test::write_text(f.tmp / "t1.yaml", changed);
  r = f.cli("reveal " + f.tmp / "t1.yaml --salt " + salt + assumptions);
  CHECK(r.exit_code == 2);
  CHECK(r.output.find("ledger.jsonl:1: ") != std::string::npos);
  CHECK(r.output.find("does not match the commitment") != std::string::npos);
  test::write_text(f.tmp / "t1.yaml", original);
  CHECK(f.cli("reveal " + f.tmp / "t1.yaml --salt 00" + assumptions).exit_code == 2);
  REQUIRE(f.cli("reveal " + f.tmp / "t1.yaml --salt " + salt + assumptions).exit_code == 0);
  REQUIRE(f.cli("reveal " + f.tmp / "t2.yaml --salt " + salt2 + assumptions).exit_code == 0);
  REQUIRE(f.cli("review --theory t1 --reviewer ann --scores clarity=4,rigour=2").exit_code == 0);
  REQUIRE(f.cli("review --theory t1 --reviewer bob --scores clarity=2,rigour=2").exit_code == 0);
  CHECK(f.cli("review --theory t1 --reviewer cy --scores clarity=9").exit_code == 2);

  r = f.cli("score --runs " + f.tmp / "out");
  INFO(r.output);
  REQUIRE(r.exit_code == 0);
  const auto board = nlohmann::json::parse(test::read_text(f.tmp / "out/theories.json"));
  const auto& t1 = board["theories"][0];
  CHECK(t1["id"] == "t1");
  CHECK(t1["post_hoc"] == false);
  // dpo > sft: every resample's difference is +1: happened, log 0.8.
  CHECK(t1["predictions"][0]["outcome"] == true);
  CHECK(t1["predictions"][0]["log"].get<double>() == Approx(std::log(0.8)));
  // sft scores 0 with a [0, 0] interval, inside [-0.1, 0.3]: happened, log 0.7.
  CHECK(t1["predictions"][1]["outcome"] == true);
  // Observed order dpo > dpo2 > sft against sft, dpo, dpo2: pairs (sft,dpo) d, (sft,dpo2) d, (dpo,dpo2) c.
  CHECK(t1["predictions"][2]["tau"].get<double>() == Approx(-1.0 / 3));
  // dpo2 (0.5) below dpo (1.0) on every resample: did not happen, log ln 0.4.
  CHECK(t1["predictions"][3]["outcome"] == false);
  CHECK(t1["resolved"] == 3);
  const double mean_log = (std::log(0.8) + std::log(0.7) + std::log(0.4)) / 3;
  CHECK(t1["mean_log"].get<double>() == Approx(mean_log));
  CHECK(t1["mean_brier"].get<double>() == Approx((0.04 + 0.09 + 0.36) / 3));
  CHECK(t1["peer_vs_field"].get<double>() == Approx(0.0));  // alone: post hoc t2 is kept out of the field
  // Against the range-only forecaster: 0.5 for each compare; gold's items lie in [0, 1], so the
  // interval [-0.1, 0.3] covers 0.3 of where sft's mean can be.
  CHECK(t1["predictions"][1]["reference_probability"].get<double>() == Approx(0.3));
  const double skill = std::log(0.8 / 0.5) + std::log(0.7 / 0.3) + std::log(0.4 / 0.5);
  CHECK(t1["peer_vs_uniform"].get<double>() == Approx(skill / 3));
  CHECK(t1["penalised_skill"].get<double>() == Approx(skill - 0.5 * 1 * std::log(3.0)));
  CHECK(t1["reviews"]["mean"]["clarity"].get<double>() == Approx(3.0));
  CHECK(t1["reviews"]["disagreement_sd"].get<double>() == Approx((1.0 + 0.0) / 2));
  const auto& t2 = board["theories"][1];
  CHECK(t2["post_hoc"] == true);
  CHECK(t2["mean_log"].get<double>() == Approx(std::log(0.8)));
  CHECK(board["pareto_front"] == nlohmann::json::array({"t1"}));
  CHECK(test::read_text(f.tmp / "out/theories.md").find("POST HOC") != std::string::npos);

  // Scores reproduce exactly from the ledger and the runs.
  const std::string first = test::read_text(f.tmp / "out/theories.json");
  REQUIRE(f.cli("score --runs " + f.tmp / "out").exit_code == 0);
  CHECK(test::read_text(f.tmp / "out/theories.json") == first);

  // An edited ledger line stops scoring, naming the line.
  std::string ledger = test::read_text(f.tmp / "ledger.jsonl");
  ledger.replace(ledger.find("\"post_hoc\":true"), 15, "\"post_hoc\":false");
  test::write_text(f.tmp / "ledger.jsonl", ledger);
  r = f.cli("score --runs " + f.tmp / "out");
  CHECK(r.exit_code == 2);
  CHECK(r.output.find("ledger.jsonl:2: was edited after it was written") != std::string::npos);
}

TEST_CASE(
    "the board resists gaming: wide intervals earn nothing, undecidable claims dilute, one lucky call is off the front",
    "[theories]") {
  Fixture f;
  const std::string assumptions = " --assumptions " + f.tmp / "assumptions.yaml";
  const auto write = [&](const std::string& id, const std::string& predictions) {
    std::string text = f.theory(predictions);
    text.replace(text.find("id: t1"), 6, "id: " + id);
    test::write_text(f.tmp / (id + ".yaml"), text);
  };
  // honest: two compares and a narrow interval, one of them wrong.
  write("honest", kCompare +
                      "  - {id: r, interval: {metric: gold, variant: sft, low: -0.1, high: 0.3}, probability: 0.7}\n"
                      "  - {id: c, compare: {metric: gold, better: dpo2, worse: dpo}, probability: 0.6}\n");
  // wide: three intervals that cannot miss, at 0.99 (the old mean log score's best: -0.01).
  write("wide",
        "  - {id: a, interval: {metric: gold, variant: sft, low: -10, high: 10}, probability: 0.99}\n"
        "  - {id: b, interval: {metric: gold, variant: dpo, low: -10, high: 10}, probability: 0.99}\n"
        "  - {id: c, interval: {metric: gold, variant: dpo2, minus: sft, low: -10, high: 10}, probability: 0.99}\n");
  // lucky: one confident call that comes true, three the runs cannot decide (dpo2's mean 0.5 sits on
  // the bound 0.5, so its interval straddles it).
  write("lucky",
        "  - {id: a, compare: {metric: gold, better: dpo, worse: sft}, probability: 0.95}\n"
        "  - {id: b, interval: {metric: gold, variant: dpo2, low: 0.5, high: 0.9}, probability: 0.9}\n"
        "  - {id: c, interval: {metric: gold, variant: dpo2, low: 0.5, high: 0.8}, probability: 0.9}\n"
        "  - {id: d, interval: {metric: gold, variant: dpo2, low: 0.5, high: 0.7}, probability: 0.9}\n");
  std::map<std::string, std::string> salts;
  for (const std::string id : {"honest", "wide", "lucky"}) {
    const auto r = f.cli("register " + f.tmp / (id + ".yaml") + assumptions);
    INFO(r.output);
    REQUIRE(r.exit_code == 0);
    salts[id] = json_line(r.output)["salt"];
  }
  f.runs_land();
  for (const auto& [id, salt] : salts)
    REQUIRE(f.cli("reveal " + f.tmp / (id + ".yaml") + " --salt " + salt + assumptions).exit_code == 0);
  REQUIRE(f.cli("score --runs " + f.tmp / "out").exit_code == 0);
  const auto board = nlohmann::json::parse(test::read_text(f.tmp / "out/theories.json"));
  std::map<std::string, nlohmann::json> by_id;
  for (const auto& t : board["theories"]) by_id[t["id"].get<std::string>()] = t;

  // wide: every interval happened, yet each is worth ln 0.99 - ln(1 - 1e-6) (the reference gives the
  // whole range probability 1), so its skill is below 0 and it is not on the front.
  CHECK(by_id["wide"]["resolved"] == 3);
  CHECK(by_id["wide"]["mean_log"].get<double>() == Approx(std::log(0.99)));
  CHECK(by_id["wide"]["peer_vs_uniform"].get<double>() == Approx(std::log(0.99) - std::log(1 - 1e-6)));
  // lucky: one decided call, three undetermined at 0: ln(0.95 / 0.5) / 4, and off the front.
  CHECK(by_id["lucky"]["predictions"][1]["outcome"] == "undetermined");
  CHECK(by_id["lucky"]["resolved"] == 1);
  CHECK(by_id["lucky"]["mean_log"].get<double>() == Approx(std::log(0.95)));  // the best mean log of the three
  CHECK(by_id["lucky"]["peer_vs_uniform"].get<double>() == Approx(std::log(0.95 / 0.5) / 4));
  CHECK(by_id["lucky"]["off_front"] == "1 decided forecast(s), fewer than 3");
  CHECK(by_id["honest"]["peer_vs_uniform"].get<double>() ==
        Approx((std::log(0.8 / 0.5) + std::log(0.7 / 0.3) + std::log(0.4 / 0.5)) / 3));
  CHECK(board["pareto_front"] == nlohmann::json::array({"honest"}));
  // With the bar at one decided forecast, lucky's diluted skill (0.160) still trails honest's (0.365).
  REQUIRE(f.cli("score --min-resolved 1 --runs " + f.tmp / "out").exit_code == 0);
  CHECK(nlohmann::json::parse(test::read_text(f.tmp / "out/theories.json"))["pareto_front"] ==
        nlohmann::json::array({"honest"}));
}

TEST_CASE("a logged metric resolves from metrics.jsonl; a proposed method that ran otherwise stays unresolved",
          "[theories]") {
  Fixture f;
  const std::string assumptions = " --assumptions " + f.tmp / "assumptions.yaml";
  test::write_text(
      f.tmp / "t1.yaml",
      f.theory(
          "  - {id: reward, compare: {metric: log:train/reward, better: dpo, worse: sft}, probability: 0.8}\n"
          "  - {id: level, interval: {metric: log:train/reward, variant: sft, low: 0, high: 2}, probability: 0.6}\n"
          "  - {id: missing, compare: {metric: log:train/nothing, better: dpo, worse: sft}, probability: 0.8}\n"
          "  - {id: tie, compare: {metric: gold, better: dpo2, worse: dpo}, probability: 0.7}\n"
          "  - {id: proposed, new_variant: {name: dpo2, method: dpo, dpo: {beta: 0.5}}, compare: {metric: gold, "
          "better: dpo2, worse: sft}, probability: 0.7}\n"));
  const auto r = f.cli("register " + f.tmp / "t1.yaml" + assumptions);
  INFO(r.output);
  REQUIRE(r.exit_code == 0);
  test::write_text(f.tmp / "bad.yaml",
                   f.theory("  - {id: x, compare: {metric: \"log:\", better: dpo, worse: sft}, probability: 0.8}\n"));
  const auto bad = f.cli("register " + f.tmp / "bad.yaml" + assumptions);
  CHECK(bad.exit_code == 2);
  CHECK(bad.output.find("must name a logged key") != std::string::npos);
  // The last logged train/reward: sft 1.0 and 1.2, dpo 2.0 and 2.5 (seeds 0, 1); dpo2 (2.0) ran with beta 0.3.
  f.run("sft", 0, std::vector<double>(4, 0.0), 1.0);
  f.run("sft", 1, std::vector<double>(4, 0.0), 1.2);
  f.run("dpo", 0, std::vector<double>(4, 1.0), 2.0);
  f.run("dpo", 1, std::vector<double>(4, 1.0), 2.5);
  for (int seed : {0, 1}) f.run("dpo2", seed, std::vector<double>(4, 1.0), 2.0, "method: dpo\ndpo: {beta: 0.3}\n");
  REQUIRE(f.cli("reveal " + f.tmp / "t1.yaml --salt " + json_line(r.output)["salt"].get<std::string>() + assumptions)
              .exit_code == 0);
  REQUIRE(f.cli("score --runs " + f.tmp / "out").exit_code == 0);
  const auto t = nlohmann::json::parse(test::read_text(f.tmp / "out/theories.json"))["theories"][0];
  // dpo - sft per seed: +1.0 and +1.3, every resample above 0; the mean difference 1.15.
  CHECK(t["predictions"][0]["outcome"] == true);
  CHECK(t["predictions"][0]["observed"]["difference"].get<double>() == Approx(1.15));
  // sft's mean 1.1 with seeds 1.0 and 1.2: its interval [1.0, 1.2] lies in [0, 2]. The logged values
  // span [1.0, 2.5] (the earlier -5 is not the last value), so [0, 2] covers (2 - 1) / 1.5 of it.
  CHECK(t["predictions"][1]["outcome"] == true);
  CHECK(t["predictions"][1]["reference_probability"].get<double>() == Approx(1.0 / 1.5));
  CHECK(t["predictions"][2]["outcome"] == "unresolved");
  // dpo2 and dpo are right on every item at both seeds: the difference is 0 in every resample, so
  // "dpo2 > dpo" did not happen (the event is strict), rather than being undetermined.
  CHECK(t["predictions"][3]["outcome"] == false);
  CHECK(t["predictions"][3]["log"].get<double>() == Approx(std::log(0.3)));
  CHECK(t["predictions"][4]["outcome"] == "unresolved");
  CHECK(t["predictions"][4]["why"] == "dpo2 ran with dpo.beta = 0.3, not the proposed 0.5");
}
