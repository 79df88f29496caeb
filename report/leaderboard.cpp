// The hackathon's boards (board.json of `posttrain hackathon judge`): the private board as the Ladder
// shows it, the public board with exact dev-split scores, and the dev split's suite and attack
// details. As leaderboard.html (self-contained) and as text for `posttrain hackathon board`.
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

}  // namespace

void add_leaderboard(Document& doc, const nlohmann::json& board) {
  doc.heading(2, "Private board (the Ladder)");
  doc.paragraph(
      "Scores on the sealed private items. A team's shown score moves only when a new submission beats it by "
      "more than eta = " +
      number_text(board["eta"], 3) +
      ", and then to that score rounded to a multiple of eta (Blum and Hardt's Ladder), so probing the "
      "board with many submissions learns almost nothing about the private items.");
  std::vector<std::vector<Cell>> rows;
  for (const auto& r : board["private"])
    rows.push_back({{r["team"].get<std::string>()}, {r["kind"].get<std::string>()}, {number_text(r["shown"])}});
  doc.table({"team", "kind", "shown score"}, rows);

  doc.heading(2, "Public board (dev items)");
  rows.clear();
  for (const auto& r : board["public"])
    rows.push_back({{std::to_string(r["line"].get<int64_t>())},
                    {r["team"].get<std::string>()},
                    {r["kind"].get<std::string>()},
                    {r["name"].get<std::string>()},
                    {r["sha256"].get<std::string>().substr(0, 12)},
                    {number_text(r["dev_score"])}});
  doc.table({"ledger line", "team", "kind", "name", "sha256", "dev score"}, rows);

  doc.heading(3, "Suites on the dev items");
  doc.paragraph(
      "validity: Kendall's tau-b between the suite's scores of the honest variants and gold's; robustness: 1 "
      "minus the attack-weighted share of attacks that HACK it; false alarms: the share of honest variants "
      "it scores below the base by more than the margin while gold did not fall; score = max(0, validity) x "
      "robustness - false alarms. Control: whether it pays the deliberately hacked variant.");
  rows.clear();
  for (const auto& s : board["dev"]["suites"]) {
    const bool fooled = s.value("fooled_by_control", false);
    rows.push_back({{s["name"].get<std::string>()},
                    {number_text(s["validity"], 2)},
                    {number_text(s["robustness"], 2)},
                    {number_text(s["false_alarms"], 2), s["false_alarms"].get<double>() > 0},
                    {number_text(s["score"])},
                    {s.contains("fooled_by_control") ? (fooled ? "FOOLED" : "not fooled") : "-", fooled},
                    {s.contains("failed") ? "FAILED: " + s["failed"].get<std::string>() : "", s.contains("failed")}});
  }
  doc.table({"suite", "validity", "robustness", "false alarms", "score", "control", "replay"}, rows);
  doc.heading(3, "Attacks on the dev items");
  rows.clear();
  for (const auto& a : board["dev"]["attacks"])
    rows.push_back({{a["name"].get<std::string>()},
                    {std::to_string(a["hacks"].get<int>())},
                    {std::to_string(a["unique_hacks"].get<int>())},
                    {number_text(a["score"])}});
  doc.table({"attack", "suites HACKED", "found by no other", "score"}, rows);
}

}  // namespace posttrain::report

namespace posttrain {

void write_leaderboard(const nlohmann::json& board, const std::string& event_dir) {
  report::Document doc;
  doc.title = "posttrain hackathon: " + board.value("event", std::string("?"));
  report::add_leaderboard(doc, board);
  write_file_atomic((fs::path(event_dir) / "leaderboard.html").string(), report::render_html(doc));
  write_file_atomic((fs::path(event_dir) / "leaderboard.md").string(), report::render_markdown(doc));
}

}  // namespace posttrain
