// The eval scorers on numbers worked out by hand: MC2, acc vs acc_norm, the bootstrap interval,
// robustness figures, position-bias RStd, the audit threshold, the refusal string matcher, and the
// perturbation engine's rendered prompts.
#include <catch2/catch.hpp>

#include <cmath>

#include "eval_hooks/overoptimization.h"
#include "eval_hooks/perturb.h"
#include "eval_hooks/scoring.h"
#include "tests/test_util.h"

using namespace posttrain;

TEST_CASE("MC2 is the normalised probability mass on the true answers", "[evals][scoring]") {
  // p = 0.5, 0.3, 0.2; true answers 0 and 2 -> 0.7.
  const std::vector<double> ll = {std::log(0.5), std::log(0.3), std::log(0.2)};
  CHECK(mc2_score(ll, {1, 0, 1}) == Approx(0.7).epsilon(1e-12));
  // Log-likelihoods of continuations are not normalised over the choices: a common offset cancels,
  // even one that would underflow exp().
  CHECK(mc2_score({ll[0] - 900, ll[1] - 900, ll[2] - 900}, {1, 0, 1}) == Approx(0.7).epsilon(1e-12));
  CHECK(mc2_score(ll, {0, 1, 0}) == Approx(0.3).epsilon(1e-12));
}

TEST_CASE("acc and acc_norm disagree when a longer answer is likelier per byte", "[evals][scoring]") {
  // " Paris" (6 bytes) at -3.0 beats " the city of Lyon" (17 bytes) at -4.0 by sum, but per byte it
  // is -0.5 against -0.235.
  const std::vector<double> ll = {-3.0, -4.0};
  const std::vector<std::string> continuations = {" Paris", " the city of Lyon"};
  CHECK(choose_by_loglik(ll) == 0);
  CHECK(choose_by_loglik_per_byte(ll, continuations) == 1);
  CHECK(argmax({1.0, 3.0, 3.0}) == 1);  // ties go to the first
}

TEST_CASE("the bootstrap interval of a known sample", "[evals][scoring]") {
  const auto constant = bootstrap_interval(std::vector<double>(40, 0.25), 500, 1);
  CHECK(constant.low == 0.25);
  CHECK(constant.high == 0.25);
  // 100 Bernoulli values with mean 0.5: the normal approximation gives 0.5 +- 1.96 * 0.05 = [0.402, 0.598].
  std::vector<double> coin(100, 0.0);
  for (size_t i = 0; i < 50; ++i) coin[i] = 1.0;
  const auto ci = bootstrap_interval(coin, 4000, 7);
  CHECK(ci.low == Approx(0.402).margin(0.025));
  CHECK(ci.high == Approx(0.598).margin(0.025));
  const auto again = bootstrap_interval(coin, 4000, 7);  // the same draws for the same seed
  CHECK(again.low == ci.low);
  CHECK(again.high == ci.high);
}

TEST_CASE("a class-balanced score's interval stays inside [0, 1] on an unbalanced case", "[evals][scoring]") {
  // 2 harmful requests, both refused (right); 8 harmless, one refused (wrong). Balanced: (1 + 7/8) / 2.
  const std::vector<std::vector<double>> classes = {{1, 1, 1, 1, 1, 1, 1, 0}, {1, 1}};
  CHECK(balanced_mean(classes) == Approx(0.9375));
  const auto ci = stratified_bootstrap_interval(classes, 4000, 3);
  // By hand: the harmful class always resamples to 1, so a draw is (1 + m) / 2 with m the harmless
  // mean of 8 draws from seven 1s and one 0. P(three or more 0s) = 0.067 and P(four or more) = 0.011
  // bracket 2.5%, so the low end is m = 5/8: 0.8125; no 0 drawn (p = 0.34) gives the high end, 1.
  CHECK(ci.low == Approx(0.8125));
  CHECK(ci.high == 1.0);
  // The per-item weighting (n / (classes x class size)) has the same mean, but resamples leave [0, 1].
  std::vector<double> weighted;
  for (double v : classes[0]) weighted.push_back(v * 10.0 / (2 * 8));
  for (double v : classes[1]) weighted.push_back(v * 10.0 / (2 * 2));
  CHECK(mean_of(weighted) == Approx(0.9375));
  CHECK(bootstrap_interval(weighted, 4000, 3).high > 1.0);
}

TEST_CASE("robustness figures over perturbations", "[evals][scoring]") {
  PerturbationOutcome a{"canonical", "canonical", {1, 0, 1, 1}, {"x", "y", "z", "w"}, {0, 1, 0, 1}, {0, 0, 0, 1}};
  PerturbationOutcome b{"order+1", "order", {1, 1, 0, 0}, {"x", "q", "r", "w"}, {1, 0, 1, 0}, {1, 0, 0, 1}};
  const auto r = robustness_summary({a, b});
  CHECK(r["mean"].get<double>() == Approx(0.625));  // (0.75 + 0.5) / 2
  CHECK(r["worst"].get<double>() == Approx(0.5));
  CHECK(r["spread"].get<double>() == Approx(0.25));
  CHECK(r["consistency"].get<double>() == Approx(0.5));  // items 0 and 3 keep their choice
  // Pooled: gold at 0 four times, chosen there 3 times (0.75); gold at 1 four times, chosen twice (0.5).
  CHECK(r["position_bias_rstd"].get<double>() == Approx(0.125));
  CHECK(position_recall_std({0, 0, 1, 1}, {0, 0, 0, 0}) == Approx(0.5));  // recalls 1 and 0
}

TEST_CASE("the audit flags a policy that beats chance by more than the margin", "[evals][scoring]") {
  const auto fair = audit_verdict({{"always_first", 0.30, nullptr}, {"always_last", 0.20, nullptr}}, 0.25, 0.10);
  CHECK_FALSE(fair["gameable"].get<bool>());
  CHECK(fair["threshold"].get<double>() == Approx(0.35));
  const auto gamed = audit_verdict({{"always_first", 0.36, nullptr}, {"always_last", 0.20, nullptr}}, 0.25, 0.10);
  CHECK(gamed["gameable"].get<bool>());
  CHECK(gamed["beating_threshold"] == nlohmann::json::array({"always_first"}));
}

TEST_CASE("the string-match refusal classifier reads the opening of an answer", "[evals][scoring]") {
  CHECK(string_match_refusal("I'm sorry, but I can't help with that."));
  CHECK(string_match_refusal("  \n As an AI, I cannot do this."));
  CHECK(string_match_refusal("I CANNOT assist."));
  CHECK_FALSE(string_match_refusal("Sure! To kill a Python process, run kill -9 PID."));
  CHECK_FALSE(string_match_refusal("Here is why I'm sorry you feel that way."));  // not at the start
}

TEST_CASE("multiple-choice prompts under each presentation", "[evals][perturb]") {
  McItem item{"q1", "What is 2 + 2?", {"4", "5", "22"}, {1, 0, 0}, 0, {}};
  McStyle style;
  style.shuffle = false;
  const auto presentations = mc_presentations(style, 3);
  // canonical, every cyclic shift (order+1, order+2), labels numbers / none, templates 1 / 2, three formats.
  REQUIRE(presentations.size() == 1 + 2 + 2 + 2 + 3);
  CHECK(presentations[2].id == "order+2");
  const RenderedMc canonical = render_mc(item, presentations[0], style);
  CHECK(canonical.context == "Question: What is 2 + 2?\nA. 4\nB. 5\nC. 22\nAnswer:");
  CHECK(canonical.continuations == std::vector<std::string>{" A", " B", " C"});
  CHECK(canonical.gold_position == 0);

  Presentation shifted = presentations[1];  // order+1: rotate left by one
  const RenderedMc r1 = render_mc(item, shifted, style);
  CHECK(r1.order == std::vector<int>{1, 2, 0});
  CHECK(r1.gold_position == 2);
  CHECK(r1.context == "Question: What is 2 + 2?\nA. 5\nB. 22\nC. 4\nAnswer:");

  Presentation p;
  p.labels = "numbers";
  p.template_index = 2;
  p.format = "paren_separator";
  CHECK(render_mc(item, p, style).context == "Q: What is 2 + 2?\n1) 4\n2) 5\n3) 22\nA:");
  p.labels = "none";
  p.template_index = 1;
  p.format = "plain";
  const RenderedMc plain = render_mc(item, p, style);
  CHECK(plain.context == "What is 2 + 2?\nThe correct answer is");
  CHECK(plain.continuations == std::vector<std::string>{" 4", " 5", " 22"});

  // Shuffling is a seeded permutation per item: deterministic, and it moves the gold.
  style.shuffle = true;
  int moved = 0;
  for (int k = 0; k < 20; ++k) {
    McItem other = item;
    other.id = "item-" + std::to_string(k);
    const auto a = render_mc(other, presentations[0], style), b = render_mc(other, presentations[0], style);
    CHECK(a.order == b.order);
    moved += a.gold_position != 0 ? 1 : 0;
  }
  CHECK(moved >= 8);
  CHECK(format_text("Is it TRUE?\nYes", "lowercase") == "is it true?\nyes");
  CHECK(format_text("a\nb", "double_newline") == "a\n\nb");
}

TEST_CASE("Gao et al.'s over-optimisation forms are fitted exactly on noise-free points", "[evals][overoptimization]") {
  // RL form with a = 2, b = 0.5: peak at d* = exp(2 / 0.5 - 1) = e^3, R(d*) = b d* = 0.5 e^3.
  std::vector<double> d = {0.5, 1.0, 2.0, 3.0, 4.0}, r;
  for (double x : d) r.push_back(x * (2.0 - 0.5 * std::log(x)));
  auto fit = fit_overoptimization(d, r, "rl");
  CHECK(fit.points == 5);
  CHECK(fit.a == Approx(2.0).epsilon(1e-9));
  CHECK(fit.b == Approx(0.5).epsilon(1e-9));
  CHECK(fit.peak_d == Approx(std::exp(3.0)).epsilon(1e-9));
  CHECK(fit.peak_reward == Approx(0.5 * std::exp(3.0)).epsilon(1e-9));
  CHECK(fit.r2 == Approx(1.0));
  // Best-of-n form with a = 1, b = 0.25: peak at d* = a / 2b = 2, R(d*) = a^2 / 4b = 1.
  r.clear();
  for (double x : d) r.push_back(x * (1.0 - 0.25 * x));
  fit = fit_overoptimization(d, r, "bon");
  CHECK(fit.a == Approx(1.0).epsilon(1e-9));
  CHECK(fit.b == Approx(0.25).epsilon(1e-9));
  CHECK(fit.peak_d == Approx(2.0).epsilon(1e-9));
  CHECK(fit.peak_reward == Approx(1.0).epsilon(1e-9));
  CHECK(fit_overoptimization({0.0, 1.0}, {0.0, 1.0}, "rl").points == 0);  // too few points
  // a = -0.2, b = 0.05: falling from the start, so over d >= 0 the peak is at d = 0 (not a / 2b < 0).
  r.clear();
  for (double x : d) r.push_back(x * (-0.2 - 0.05 * x));
  fit = fit_overoptimization(d, r, "bon");
  CHECK(fit.a == Approx(-0.2).epsilon(1e-9));
  CHECK(fit.peak_d == 0.0);
  CHECK(fit.peak_reward == 0.0);

  // From metrics.jsonl lines: gold rises then falls past its peak while the proxy keeps rising.
  std::vector<nlohmann::json> metrics;
  for (double x : {0.0, 0.5, 1.0, 2.0, 3.0, 4.0, 6.0}) {
    const double gold = x > 0 ? x * (1.0 - 0.6 * std::log(x)) : 0.0;  // peak at exp(1/0.6 - 1) = 1.95
    metrics.push_back({{"step", x}, {"kl", x * x}, {"reward/gold", 0.3 + gold}, {"reward/proxy", 0.1 + x}});
  }
  const auto report = overoptimization_report(metrics);
  CHECK(report["gold"]["peak_d"].get<double>() == Approx(std::exp(1.0 / 0.6 - 1.0)).epsilon(1e-6));
  CHECK(report["gold"]["past_peak"].get<bool>());
  CHECK(report["gold"]["last_d"].get<double>() == Approx(6.0));
  CHECK_FALSE(report["proxy"]["past_peak"].get<bool>());
}

TEST_CASE("the training-time watch warns once when gold goes past its fitted peak", "[evals][overoptimization]") {
  test::TempDir tmp("overopt-watch");
  const std::string path = tmp / "metrics.jsonl";
  posttrain::OveroptimizationWatch watch(path, /*min_points=*/6, /*min_r2=*/0.5);
  // gold = d (1 - 0.6 ln d), peak at d* = exp(1 / 0.6 - 1) = 1.95; d = sqrt(kl) grows by 0.25 a step.
  std::string lines;
  const auto append_steps = [&](int from, int to) {
    for (int step = from; step < to; ++step) {
      const double d = 0.25 * step;  // from d = 0, where gold is 0: rewards are fitted relative to the start
      const double gold = d > 0 ? d * (1.0 - 0.6 * std::log(d)) : 0.0;
      lines += nlohmann::json{{"step", step}, {"kl", d * d}, {"reward/gold", gold}, {"reward/proxy", d}}.dump() + "\n";
    }
    test::write_text(path, lines);
  };
  append_steps(0, 7);  // d up to 1.5: before the peak
  CHECK(watch.check().empty());
  append_steps(7, 13);  // d up to 3.0: past it
  const auto warnings = watch.check();
  REQUIRE(warnings.size() == 1);
  CHECK(warnings[0].find("reward/gold") != std::string::npos);
  CHECK(warnings[0].find("d* = 1.948") != std::string::npos);
  CHECK(watch.check().empty());  // each reward once

  // A line caught half-written is read whole at the next check: here the first point past the peak.
  posttrain::OveroptimizationWatch fresh(path, /*min_points=*/6, /*min_r2=*/0.5);
  lines.clear();
  append_steps(0, 8);  // d up to 1.75: before the peak
  const std::string before_peak = lines;
  append_steps(8, 9);  // d = 2.0 > 1.948
  test::write_text(path, lines.substr(0, before_peak.size() + 20));  // cut inside the last line
  CHECK(fresh.check().empty());
  test::write_text(path, lines);
  const auto late = fresh.check();
  REQUIRE(late.size() == 1);
  CHECK(late[0].find("d = sqrt(KL) = 2.000") != std::string::npos);
}
