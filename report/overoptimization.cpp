// Over-optimisation: Gao et al.'s RL form fitted to each reward of each RL run, with the rewards
// against sqrt(KL) as charts.
#include "eval_hooks/overoptimization.h"
#include "report/charts.h"
#include "report/sections.h"

namespace posttrain::report {

void add_overoptimization(Document& doc, const ReportInput& in) {
  std::vector<std::vector<Cell>> rows;
  for (const auto& run : in.runs) {
    const nlohmann::json fits = overoptimization_report(run.metrics);
    for (const auto& [reward, fit] : fits.items()) {
      const bool past = fit["past_peak"].get<bool>();
      rows.push_back({{run.name},
                      {reward},
                      {fixed(fit["a"].get<double>())},
                      {fixed(fit["b"].get<double>())},
                      {fit["peak_d"].is_number() ? fixed(fit["peak_d"].get<double>()) : "none yet"},
                      {fixed(fit["last_d"].get<double>())},
                      {fixed(fit["r2"].get<double>(), 2)},
                      {past ? "PAST THE PEAK" : "no", past}});
    }
  }
  if (rows.empty()) return;
  doc.heading(2, "Over-optimisation");
  doc.paragraph(
      "Reward gained since the first step against d = sqrt(KL to the start), fitted with Gao et al. (2022)'s RL "
      "form R(d) = d (a - b ln d); the peak is at d* = exp(a / b - 1). Past it, pushing the proxy further lowers "
      "that reward.");
  doc.table({"run", "reward", "a", "b", "peak d*", "last d", "R^2", "past the peak"}, rows);
  for (const auto& run : in.runs) doc.svg(reward_vs_kl_chart(run));
}

}  // namespace posttrain::report
