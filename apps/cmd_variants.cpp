// posttrain variants MATRIX.yaml: runs every variant of a matrix (one base, data spec, seed and
// budget; variants differ in method only), each in its own `posttrain run` (or `launch`) process,
// skipping variants already completed; then checks the controls and writes the report.
// posttrain report RUN_DIR...: the report alone, over any run folders (or a matrix's folder).
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <iostream>

#include "apps/cli.h"
#include "core/error.h"
#include "core/files.h"
#include "core/recipe.h"
#include "core/subprocess.h"
#include "core/variants.h"
#include "redteam/matrix.h"
#include "report/report.h"
#include "trainers/plugin.h"
#include "trainers/run.h"

namespace fs = std::filesystem;

namespace posttrain::cli {

namespace {

bool completed(const std::string& run_dir) {
  const std::string manifest = (fs::path(run_dir) / "manifest.json").string();
  if (!fs::exists(manifest)) return false;
  try {
    return nlohmann::json::parse(read_file(manifest)).value("status", "") == "completed";
  } catch (const std::exception&) {
    return false;
  }
}

// Prints each control check; differences outside the method section loudly.
void print_controls(const nlohmann::json& controls) {
  for (const auto& c : controls["checks"])
    std::cerr << "posttrain: control " << (c["passed"].get<bool>() ? "ok    " : "FAILED") << "  "
              << c["check"].get<std::string>() << (c["passed"].get<bool>() ? "" : ": " + c["detail"].dump()) << "\n";
  for (const auto& d : controls["differences"]) {
    std::cerr << "posttrain: CONTROL VIOLATION: " << d["key"].get<std::string>() << " differs:";
    for (const auto& [run, value] : d["values"].items()) std::cerr << " " << run << "=" << value.get<std::string>();
    std::cerr << "\n";
  }
}

}  // namespace

int variants(const std::vector<std::string>& args) {
  po::options_description options("variants options");
  std::string matrix_path;
  std::vector<std::string> only, overrides;
  int nproc = 1;
  bool check_only = false;
  options.add_options()("matrix", po::value(&matrix_path)->required(), "variant matrix YAML")(
      "only", po::value(&only)->composing(), "run only this variant (repeatable); the others are still checked")(
      "nproc-per-node", po::value(&nproc)->default_value(1), "worker processes per variant (posttrain launch)")(
      "check-only", po::bool_switch(&check_only), "run nothing: check the controls and write the report")(
      "set", po::value(&overrides)->composing(),
      "key.sub=value applied to the matrix (also given after MATRIX.yaml), e.g. train.steps=10");
  po::positional_options_description positional;
  positional.add("matrix", 1).add("set", -1);
  po::variables_map vm;
  if (!parse("variants", "MATRIX.yaml [key=value ...] [--only NAME] [--nproc-per-node N]", options, args, vm,
             &positional))
    return 0;
  if (nproc < 1) throw UserError("--nproc-per-node must be at least 1");

  const Matrix matrix = parse_matrix(matrix_path, load_plugins, trainer_data_kind, overrides);
  const MatrixRedteam redteam_plan = read_matrix_redteam(matrix);  // validated before anything trains
  for (const auto& skipped : redteam_plan.skipped) std::cerr << "posttrain: redteam skips " << skipped << "\n";
  for (const auto& name : only) {
    bool known = false;
    for (const auto& v : matrix.variants) known = known || v.name == name || v.run_name == name;
    if (!known) throw UserError("--only " + name + ": no such variant in " + matrix_path);
  }
  // Every variant's recipe and method options are written and validated before anything runs: a
  // typo in the last variant is found before the first has trained for minutes.
  const fs::path recipes = fs::path(matrix.output_dir) / "recipes";
  fs::create_directories(recipes);
  const auto recipe_of = [&](const Variant& v) {  // recipes/<variant>.yaml, or <variant>.seed-<s>.yaml
    std::string file = v.run_name;
    std::replace(file.begin(), file.end(), '/', '.');
    return (recipes / (file + ".yaml")).string();
  };
  for (const auto& v : matrix.variants) {
    write_file_atomic(recipe_of(v), v.recipe_yaml);
    check_method_options(recipe_of(v), nproc);
  }
  write_file_atomic((fs::path(matrix.output_dir) / "matrix.json").string(), matrix_layout(matrix).dump(2) + "\n");

  std::vector<std::string> failed;
  for (const auto& v : matrix.variants) {
    const bool chosen = only.empty() || std::find(only.begin(), only.end(), v.name) != only.end() ||
                        std::find(only.begin(), only.end(), v.run_name) != only.end();
    if (check_only || !chosen) continue;
    const std::string run_dir = (fs::path(matrix.output_dir) / v.run_name).string();
    if (completed(run_dir)) {
      std::cerr << "posttrain: variant " << v.run_name << " already completed in " << run_dir
                << " (delete the folder to run it again)\n";
      continue;
    }
    std::cerr << "posttrain: variant " << v.run_name << " (" << v.method << ")\n";
    const std::string recipe = recipe_of(v);
    const int rc = nproc > 1 ? run_self({"launch", "--nproc-per-node", std::to_string(nproc), recipe}).exit_code
                             : run_self({"run", recipe}).exit_code;
    if (rc != 0) {
      std::cerr << "posttrain: variant " << v.run_name << " failed (exit code " << rc << "); the others go on\n";
      failed.push_back(v.run_name);
    }
  }

  std::vector<std::string> run_dirs;
  for (const auto& v : matrix.variants) {
    const std::string run_dir = (fs::path(matrix.output_dir) / v.run_name).string();
    if (fs::exists(fs::path(run_dir) / "manifest.json")) run_dirs.push_back(run_dir);
  }
  if (run_dirs.empty()) throw UserError(matrix.output_dir + ": no variant has run yet");
  const nlohmann::json controls = check_controls(run_dirs, &matrix);
  write_file_atomic((fs::path(matrix.output_dir) / "controls.json").string(), controls.dump(2) + "\n");
  print_controls(controls);
  nlohmann::json redteam;
  const fs::path redteam_file = fs::path(matrix.output_dir) / "redteam" / "redteam.json";
  if (!redteam_plan.spec.attacks.empty() && !check_only) {
    std::cerr << "posttrain: red team on " << redteam_plan.on << "\n";
    redteam = run_matrix_redteam(redteam_plan, run_dirs);
  } else if (fs::exists(redteam_file)) {
    redteam = nlohmann::json::parse(read_file(redteam_file.string()));
  }
  write_report(run_dirs, matrix.output_dir, matrix.name, controls, redteam, matrix_layout(matrix));
  std::cerr << "posttrain: report in " << (fs::path(matrix.output_dir) / "report.html").string() << "\n";
  if (!failed.empty()) {
    std::string names;
    for (const auto& n : failed) names += (names.empty() ? "" : ", ") + n;
    throw UserError("variants failed: " + names);
  }
  return 0;
}

int report(const std::vector<std::string>& args) {
  po::options_description options("report options");
  std::vector<std::string> dirs;
  std::string out, title, redteam_file;
  options.add_options()("runs", po::value(&dirs)->composing()->required(),
                        "run folders, or one matrix output folder (its variants and controls.json)")(
      "out", po::value(&out), "where report.md and report.html go (default: the matrix folder, else .)")(
      "title", po::value(&title)->default_value("posttrain report"), "report title")(
      "redteam", po::value(&redteam_file),
      "redteam.json of posttrain redteam: adds the Red team section (default: the matrix folder's redteam/)");
  po::positional_options_description positional;
  positional.add("runs", -1);
  po::variables_map vm;
  if (!parse("report", "RUN_DIR... [--out DIR]", options, args, vm, &positional)) return 0;

  nlohmann::json controls;
  std::vector<std::string> run_dirs = dirs;
  nlohmann::json layout;
  if (dirs.size() == 1 && fs::exists(fs::path(dirs[0]) / "controls.json")) {  // a matrix's output folder
    run_dirs = matrix_run_dirs(dirs[0]);
    controls = nlohmann::json::parse(read_file((fs::path(dirs[0]) / "controls.json").string()));
    const fs::path layout_file = fs::path(dirs[0]) / "matrix.json";
    if (fs::exists(layout_file)) layout = nlohmann::json::parse(read_file(layout_file.string()));
    if (out.empty()) out = dirs[0];
  } else {
    for (const auto& d : run_dirs)
      if (!fs::exists(fs::path(d) / "manifest.json")) throw UserError(d + ": not a run folder (no manifest.json)");
    controls = check_controls(run_dirs, nullptr);
    print_controls(controls);
  }
  if (out.empty()) out = ".";
  if (redteam_file.empty() && dirs.size() == 1 && fs::exists(fs::path(dirs[0]) / "redteam" / "redteam.json"))
    redteam_file = (fs::path(dirs[0]) / "redteam" / "redteam.json").string();
  nlohmann::json redteam;
  if (!redteam_file.empty()) {
    if (!fs::is_regular_file(redteam_file)) throw UserError(redteam_file + ": redteam.json not found");
    try {
      redteam = nlohmann::json::parse(read_file(redteam_file));
    } catch (const nlohmann::json::exception& e) {
      throw UserError(redteam_file + ": not valid JSON: " + e.what());
    }
    if (!redteam.is_object() || !redteam.contains("runs") || !redteam["runs"].is_array())
      throw UserError(redteam_file + ": not a redteam.json (no \"runs\" list)");
  }
  write_report(run_dirs, out, title, controls, redteam, layout);
  std::cout << (fs::path(out) / "report.md").string() << "\n" << (fs::path(out) / "report.html").string() << "\n";
  return 0;
}

}  // namespace posttrain::cli
