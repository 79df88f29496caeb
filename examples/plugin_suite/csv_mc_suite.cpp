// A new eval suite as a plugin: multiple-choice items from a CSV with columns `question`, `correct`
// and `incorrect` (wrong answers separated by " | "). Loading is all it adds: scoring, perturbations,
// the audit and the records come from posttrain's multiple-choice suite.
#include <eval_hooks/items.h>
#include <eval_hooks/suite.h>
#include <trainers/plugin.h>

#include <core/error.h>

namespace {

std::vector<posttrain::McItem> load_csv_items(const std::string& path) {
  const posttrain::CsvTable table = posttrain::read_csv(path);
  const size_t question = table.column("question", path), correct = table.column("correct", path),
               incorrect = table.column("incorrect", path);
  std::vector<posttrain::McItem> items;
  for (size_t r = 0; r < table.rows.size(); ++r) {
    const auto& row = table.rows[r];
    posttrain::McItem item;
    item.id = "item-" + std::to_string(r);
    item.question = row[question];
    item.choices.push_back(row[correct]);
    for (size_t start = 0; start <= row[incorrect].size();) {
      size_t end = row[incorrect].find(" | ", start);
      if (end == std::string::npos) end = row[incorrect].size();
      item.choices.push_back(row[incorrect].substr(start, end - start));
      start = end + 3;
    }
    if (item.choices.size() < 2 || item.question.empty())
      posttrain::fail(path + ":" + std::to_string(table.lines[r]),
                      "needs a question and at least one incorrect answer");
    item.gold = 0;
    item.truth.assign(item.choices.size(), 0);
    item.truth[0] = 1;
    items.push_back(item);
  }
  return items;
}

}  // namespace

POSTTRAIN_PLUGIN {
  posttrain::register_suite(
      "csv_mc",
      [](posttrain::YamlSection& options) {
        posttrain::CommonSuiteOptions common =
            posttrain::read_common_options(options, {"order", "labels", "template", "format"});
        posttrain::McStyle style;
        style.seed = common.seed;
        style.axes = common.perturbations;
        auto items = load_csv_items(common.data);
        posttrain::apply_limit(items, common.limit);
        return posttrain::make_mc_suite(std::move(items), style, common, /*chat=*/false);
      },
      "multiple choice from CSV (question, correct, incorrect separated by \" | \") [example plugin]");
}
