// The theories board (theories.json of `posttrain theory score`): every theory with its scores,
// assumptions, reviews and post hoc flag; the Pareto front of accuracy against assumptions; every
// prediction with its outcome. As a section of the matrix's report, and as theories.md / .html.
#include <filesystem>

#include "core/files.h"
#include "report/report.h"
#include "report/sections.h"

namespace fs = std::filesystem;

namespace posttrain::report {

namespace {

std::string number_text(const nlohmann::json& v, int digits = 3) {
  return v.is_number() ? fixed(v.get<double>(), digits) : "-";
}

std::string outcome_text(const nlohmann::json& r) {
  const auto& o = r["outcome"];
  if (o.is_boolean()) return o.get<bool>() ? "happened" : "did not happen";
  if (r.contains("tau")) return "tau " + number_text(r["tau"], 2);
  return o.get<std::string>() + (r.contains("why") ? " (" + r["why"].get<std::string>() + ")" : "");
}

std::string observed_text(const nlohmann::json& r) {
  if (!r.contains("observed")) return "-";
  const auto& o = r["observed"];
  if (o.contains("order")) {
    std::string order;
    for (const auto& v : o["order"]) order += (order.empty() ? "" : " > ") + v.get<std::string>();
    return order;
  }
  const double value = o.contains("difference") ? o["difference"].get<double>() : o["mean"].get<double>();
  return fixed(value) + " [" + fixed(o["ci95"][0].get<double>()) + ", " + fixed(o["ci95"][1].get<double>()) + "], " +
         std::to_string(o["seeds"].get<int>()) + " seeds";
}

}  // namespace

void add_theories(Document& doc, const nlohmann::json& board) {
  if (!board.is_object() || !board.contains("theories")) return;
  doc.heading(2, "Theories");
  doc.paragraph(
      "Theories registered in the ledger " + board.value("ledger", std::string("?")) +
      " (a salted commitment, revealed later), scored against these runs. Skill: the mean over a theory's "
      "comparisons and intervals of its log score minus that of a forecaster who knows only the metric's range "
      "(0.5 for a comparison; an interval's share of the range), with undetermined and unresolved forecasts at 0, "
      "so a trivially wide interval or an undecidable claim earns nothing. Beside it: mean log score and Brier "
      "over decided forecasts, the peer score against the field's forecasts of the same events, Kendall's tau of "
      "rankings, and total skill - k/2 ln n (k assumptions, n forecasts). Post hoc theories (registered after a "
      "variant they name had run) are scored apart and kept off the front. An outcome whose 95% interval "
      "straddles the event's bound is undetermined.");
  std::vector<std::vector<Cell>> rows;
  for (const auto& t : board["theories"]) {
    if (!t.value("revealed", false)) {
      rows.push_back({{t["id"].get<std::string>()}, {"sealed (not revealed)"}, {}, {}, {}, {}, {}, {}, {}, {}, {}});
      continue;
    }
    std::string reviews = "-";
    if (t["reviews"]["reviewers"].get<int>() > 0) {
      reviews = "reviewers " + std::to_string(t["reviews"]["reviewers"].get<int>()) + ":";
      for (const auto& [criterion, mean] : t["reviews"]["mean"].items())
        reviews += " " + criterion + " " + fixed(mean.get<double>(), 1);
      reviews += " (sd " + number_text(t["reviews"].value("disagreement_sd", nlohmann::json()), 2) + ")";
    }
    const bool post_hoc = t["post_hoc"].get<bool>();
    rows.push_back({{t["id"].get<std::string>()},
                    {post_hoc ? "POST HOC" : "before the runs", post_hoc},
                    {std::to_string(t["assumptions"].get<int>())},
                    {std::to_string(t["resolved"].get<int>()) + " of " + std::to_string(t.value("forecasts", 0))},
                    {number_text(t.value("peer_vs_uniform", nlohmann::json()))},
                    {number_text(t.value("mean_log", nlohmann::json()))},
                    {number_text(t.value("mean_brier", nlohmann::json()))},
                    {number_text(t.value("peer_vs_field", nlohmann::json()))},
                    {number_text(t["mean_tau"], 2)},
                    {number_text(t["penalised_skill"])},
                    {reviews}});
  }
  doc.table({"theory", "registered", "assumptions", "decided", "skill", "mean log", "Brier", "peer (field)", "tau",
             "skill - k/2 ln n", "reviews"},
            rows);
  std::string front;
  for (const auto& id : board["pareto_front"]) front += (front.empty() ? "" : ", ") + id.get<std::string>();
  std::string off;
  for (const auto& t : board["theories"])
    if (t.contains("off_front"))
      off += (off.empty() ? "" : "; ") + t["id"].get<std::string>() + ": " + t["off_front"].get<std::string>();
  doc.paragraph("Pareto front (no other theory has more skill with as few assumptions; at least " +
                std::to_string(board.value("min_resolved", 0)) +
                " decided forecasts to enter): " + (front.empty() ? std::string("none yet") : front) + "." +
                (off.empty() ? "" : " Kept off: " + off + "."));
  for (const auto& t : board["theories"]) {
    if (!t.value("revealed", false)) continue;
    doc.heading(3, t["id"].get<std::string>() + ": " + t.value("title", std::string()));
    std::vector<std::vector<Cell>> predictions;
    for (const auto& r : t["predictions"])
      predictions.push_back({{r["id"].get<std::string>()},
                             {r.value("event", r["kind"].get<std::string>() + " by " + r["metric"].get<std::string>())},
                             {number_text(r.value("probability", nlohmann::json()), 2)},
                             {outcome_text(r), r["outcome"].is_boolean() && !r["outcome"].get<bool>()},
                             {observed_text(r)},
                             {number_text(r.value("reference_probability", nlohmann::json()), 3)},
                             {number_text(r.value("log", nlohmann::json()))},
                             {number_text(r.value("skill", nlohmann::json()))}});
    doc.table({"prediction", "event", "P", "outcome", "observed [95%]", "reference P", "log score", "skill"},
              predictions);
  }
}

}  // namespace posttrain::report

namespace posttrain {

void write_theories_report(const nlohmann::json& board, const std::string& out_dir) {
  report::Document doc;
  doc.title = "posttrain theories";
  report::add_theories(doc, board);
  fs::create_directories(out_dir);
  write_file_atomic((fs::path(out_dir) / "theories.json").string(), board.dump(2) + "\n");
  write_file_atomic((fs::path(out_dir) / "theories.md").string(), report::render_markdown(doc));
  write_file_atomic((fs::path(out_dir) / "theories.html").string(), report::render_html(doc));
}

}  // namespace posttrain
