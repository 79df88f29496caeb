#include "report/report.h"

#include <filesystem>

#include "core/files.h"
#include "report/sections.h"

namespace fs = std::filesystem;

namespace posttrain {

void write_report(const std::vector<std::string>& run_dirs, const std::string& out_dir, const std::string& title,
                  const nlohmann::json& controls, const nlohmann::json& redteam, const nlohmann::json& layout) {
  report::ReportInput in;
  for (const auto& dir : run_dirs) in.runs.push_back(report::read_run(dir));
  in.controls = controls;
  in.redteam = redteam;
  in.layout = layout;

  const bool checked = controls.is_object();
  const bool controlled = checked && controls.value("controlled", false);
  report::Document doc;
  doc.title = title;
  doc.banner(std::to_string(in.runs.size()) + " runs. Controls: ",
             !checked     ? "controls not checked (run `posttrain variants` for a matrix)"
             : controlled ? "controlled: same base, data and budget; configs differ only in the method (seed by seed, "
                            "with replicates that differ only in the seed, when the runs have several seeds)"
                          : "NOT CONTROLLED: see the failed checks below",
             controlled);
  report::add_scores(doc, in);
  const nlohmann::json replicates = report::add_replicates(doc, in);
  report::add_other_scores(doc, in);
  report::add_curves(doc, in);
  report::add_overoptimization(doc, in);
  report::add_red_team(doc, in);
  const fs::path board = fs::path(out_dir) / "theories.json";  // posttrain theory score --runs <this folder>
  if (fs::exists(board)) report::add_theories(doc, nlohmann::json::parse(read_file(board.string())));
  report::add_controls(doc, in);
  report::add_run_table(doc, in);

  fs::create_directories(out_dir);
  write_file_atomic((fs::path(out_dir) / "report.md").string(), report::render_markdown(doc));
  write_file_atomic((fs::path(out_dir) / "report.html").string(), report::render_html(doc));
  write_file_atomic((fs::path(out_dir) / "report.json").string(),
                    nlohmann::json({{"title", title}, {"replicates", replicates}}).dump(2) + "\n");
}

}  // namespace posttrain
