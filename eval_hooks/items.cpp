#include "eval_hooks/items.h"

#include <fstream>
#include <sstream>

#include "core/error.h"
#include "core/files.h"
#include "datasets/sft_data.h"

namespace posttrain {

using nlohmann::json;

namespace {

// Calls `use` with every record of a JSONL file and its "file:line"; nothing is skipped.
void for_each_record(const std::string& path, const std::function<void(const json&, const std::string&)>& use) {
  DataSpec spec;
  spec.train = path;
  for_each_jsonl_record(spec, use);
}

std::string require_string(const json& record, const std::string& field, const std::string& where) {
  if (!record.contains(field)) fail(where, "missing field \"" + field + "\"");
  const json& value = record[field];
  if (value.is_string()) return value.get<std::string>();
  // Some model-written evals store an answer as a one-element list.
  if (value.is_array() && value.size() == 1 && value[0].is_string()) return value[0].get<std::string>();
  fail(where, "field \"" + field + "\" must be a string");
}

std::string optional_string(const json& record, const std::string& field, const std::string& where,
                            const std::string& fallback) {
  if (!record.contains(field)) return fallback;
  if (record[field].is_number_integer()) return std::to_string(record[field].get<int64_t>());
  return require_string(record, field, where);
}

std::vector<std::string> split_answers(const std::string& text) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= text.size()) {
    size_t end = text.find("; ", start);
    if (end == std::string::npos) end = text.size();
    std::string part = text.substr(start, end - start);
    while (!part.empty() && (part.back() == ' ' || part.back() == ';')) part.pop_back();
    if (!part.empty()) out.push_back(part);
    start = end + 2;
  }
  return out;
}

void check_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(path, "eval data file not found");
}

}  // namespace

size_t CsvTable::column(const std::string& name, const std::string& path) const {
  for (size_t i = 0; i < header.size(); ++i)
    if (header[i] == name) return i;
  std::string have;
  for (const auto& h : header) have += (have.empty() ? "" : ", ") + h;
  fail(path + ":1", "missing column \"" + name + "\" (columns: " + have + ")");
}

CsvTable read_csv(const std::string& path) {
  check_file(path);
  std::string text = read_file(path);
  if (text.rfind("\xEF\xBB\xBF", 0) == 0) text.erase(0, 3);  // UTF-8 byte order mark
  CsvTable table;
  std::vector<std::string> row;
  std::string field;
  int64_t line = 1, row_line = 1;
  bool quoted = false, field_started = false;
  const auto end_row = [&]() {
    row.push_back(field);
    field.clear();
    field_started = false;
    const bool blank = row.size() == 1 && row[0].empty();
    if (!blank) {
      if (table.header.empty()) {
        table.header = row;
      } else {
        if (row.size() != table.header.size())
          fail(path + ":" + std::to_string(row_line),
               "has " + std::to_string(row.size()) + " columns, the header " + std::to_string(table.header.size()));
        table.rows.push_back(row);
        table.lines.push_back(row_line);
      }
    }
    row.clear();
  };
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (quoted) {
      if (c == '"' && i + 1 < text.size() && text[i + 1] == '"') {
        field += '"';
        ++i;
      } else if (c == '"') {
        quoted = false;
      } else {
        if (c == '\n') ++line;
        field += c;
      }
    } else if (c == '"' && !field_started) {
      quoted = field_started = true;
    } else if (c == ',') {
      row.push_back(field);
      field.clear();
      field_started = false;
    } else if (c == '\n' || c == '\r') {
      if (c == '\r' && i + 1 < text.size() && text[i + 1] == '\n') ++i;
      end_row();
      row_line = ++line;
    } else {
      field += c;
      field_started = true;
    }
  }
  if (quoted) fail(path + ":" + std::to_string(row_line), "a quoted field is not closed");
  if (!field.empty() || !row.empty()) end_row();
  if (table.header.empty()) fail(path, "empty CSV file");
  return table;
}

namespace {

// A TruthfulQA targets field as (answer, label) pairs in the file's order. Two shapes exist: the
// upstream mc_task.json maps answer -> 0/1; Hugging Face's truthful_qa "multiple_choice" rows
// (and lm-eval's truthfulqa_mc tasks) hold {"choices": [...], "labels": [...]}.
std::vector<std::pair<std::string, int>> truthfulqa_targets(const nlohmann::ordered_json& targets,
                                                            const std::string& field, const std::string& where) {
  std::vector<std::pair<std::string, int>> out;
  if (targets.is_object() && targets.contains("choices") && targets.contains("labels")) {
    const auto &choices = targets["choices"], &labels = targets["labels"];
    if (!choices.is_array() || !labels.is_array() || choices.size() != labels.size())
      fail(where, "\"" + field + "\": \"choices\" and \"labels\" must be lists of the same length");
    for (size_t k = 0; k < choices.size(); ++k) {
      if (!choices[k].is_string() || !labels[k].is_number_integer())
        fail(where, "\"" + field + "\": choices must be strings and labels 0 or 1");
      out.emplace_back(choices[k].get<std::string>(), labels[k].get<int>() != 0 ? 1 : 0);
    }
    return out;
  }
  if (!targets.is_object()) fail(where, "\"" + field + "\" must be an object");
  for (const auto& [answer, label] : targets.items()) {
    if (!label.is_number_integer()) fail(where, "\"" + field + "\" values must be 0 or 1");
    out.emplace_back(answer, label.get<int>() != 0 ? 1 : 0);
  }
  return out;
}

McItem truthfulqa_item(const nlohmann::ordered_json& q, const std::string& where, size_t index) {
  if (!q.is_object() || !q.contains("question") || !q["question"].is_string() || !q.contains("mc1_targets") ||
      !q.contains("mc2_targets"))
    fail(where, "needs \"question\" (string), \"mc1_targets\" and \"mc2_targets\"");
  McItem item;
  item.id = "truthfulqa-" + std::to_string(index);
  item.question = q["question"].get<std::string>();
  for (const auto& [answer, label] : truthfulqa_targets(q["mc2_targets"], "mc2_targets", where)) {
    item.choices.push_back(answer);
    item.truth.push_back(label);
  }
  int mc1_true = 0;
  for (const auto& [answer, label] : truthfulqa_targets(q["mc1_targets"], "mc1_targets", where)) {
    const auto at = std::find(item.choices.begin(), item.choices.end(), answer);
    const int choice = static_cast<int>(at - item.choices.begin());
    if (at == item.choices.end()) {  // not among MC2's answers: score it too
      item.choices.push_back(answer);
      item.truth.push_back(label);
    }
    item.acc_choices.push_back(choice);
    if (label != 0) {
      item.gold = choice;
      ++mc1_true;
    }
  }
  if (mc1_true != 1) fail(where, "mc1_targets must have exactly one true answer");
  return item;
}

}  // namespace

std::vector<McItem> load_truthfulqa(const std::string& path) {
  std::vector<McItem> items;
  auto ends_with = [&](const std::string& suffix) {
    return path.size() >= suffix.size() && path.compare(path.size() - suffix.size(), suffix.size(), suffix) == 0;
  };
  if (ends_with(".jsonl")) {  // one question a line, either targets shape
    check_file(path);
    DataSpec spec;
    spec.train = path;
    // MC1's true answer is the first key: the ordered reader keeps the file's key order (and refuses
    // a repeated key).
    for_each_ordered_jsonl_record(spec, [&](const nlohmann::ordered_json& q, const std::string& where) {
      items.push_back(truthfulqa_item(q, where, items.size()));
    });
    if (items.empty()) fail(path, "no questions");
    return items;
  }
  if (ends_with(".json")) {
    check_file(path);
    nlohmann::ordered_json all;
    try {
      all = nlohmann::ordered_json::parse(read_file(path));
    } catch (const std::exception& e) {
      fail(path, std::string("not valid JSON: ") + e.what());
    }
    if (!all.is_array()) fail(path, "must be a JSON array of {question, mc1_targets, mc2_targets}");
    for (size_t k = 0; k < all.size(); ++k)
      items.push_back(truthfulqa_item(all[k], path + ": item " + std::to_string(k), k));
    return items;
  }
  const CsvTable table = read_csv(path);
  const size_t question = table.column("Question", path), best = table.column("Best Answer", path),
               correct = table.column("Correct Answers", path), incorrect = table.column("Incorrect Answers", path);
  for (size_t r = 0; r < table.rows.size(); ++r) {
    const auto& row = table.rows[r];
    const std::string where = path + ":" + std::to_string(table.lines[r]);
    McItem item;
    item.id = "truthfulqa-csv-" + std::to_string(r);
    item.question = row[question];
    const auto right = split_answers(row[correct]), wrong = split_answers(row[incorrect]);
    if (item.question.empty() || row[best].empty() || wrong.empty())
      fail(where, "needs a Question, a Best Answer and at least one Incorrect Answer");
    for (const auto& a : right) item.choices.push_back(a), item.truth.push_back(1);
    auto at = std::find(item.choices.begin(), item.choices.end(), row[best]);
    if (at == item.choices.end()) {
      item.choices.insert(item.choices.begin(), row[best]);
      item.truth.insert(item.truth.begin(), 1);
      at = item.choices.begin();
    }
    item.gold = static_cast<int>(at - item.choices.begin());
    item.acc_choices.push_back(item.gold);
    for (const auto& a : wrong) {
      item.acc_choices.push_back(static_cast<int>(item.choices.size()));
      item.choices.push_back(a);
      item.truth.push_back(0);
    }
    items.push_back(item);
  }
  return items;
}

std::vector<McItem> load_mc_jsonl(const std::string& path) {
  std::vector<McItem> items;
  for_each_record(path, [&](const json& record, const std::string& where) {
    McItem item;
    item.id = optional_string(record, "id", where, "item-" + std::to_string(items.size()));
    item.question = require_string(record, "question", where);
    if (!record.contains("choices") || !record["choices"].is_array() || record["choices"].size() < 2)
      fail(where, "\"choices\" must be a list of at least two strings");
    for (const auto& c : record["choices"]) {
      if (!c.is_string()) fail(where, "\"choices\" must be a list of strings");
      item.choices.push_back(c.get<std::string>());
    }
    if (!record.contains("answer") || !record["answer"].is_number_integer())
      fail(where, "\"answer\" must be the index of the correct choice");
    item.gold = record["answer"].get<int>();
    if (item.gold < 0 || item.gold >= static_cast<int>(item.choices.size()))
      fail(where, "\"answer\" " + std::to_string(item.gold) + " is not a choice index");
    item.truth.assign(item.choices.size(), 0);
    item.truth[static_cast<size_t>(item.gold)] = 1;
    if (record.contains("truth")) {
      const auto& t = record["truth"];
      if (!t.is_array() || t.size() != item.choices.size()) fail(where, "\"truth\" must list 0 or 1 for every choice");
      for (size_t i = 0; i < t.size(); ++i) item.truth[i] = t[i].get<int>() != 0 ? 1 : 0;
    }
    items.push_back(item);
  });
  return items;
}

std::vector<RefusalItem> load_xstest(const std::string& path) {
  const CsvTable table = read_csv(path);
  const size_t id = table.column("id", path), prompt = table.column("prompt", path), type = table.column("type", path),
               label = table.column("label", path);
  std::vector<RefusalItem> items;
  for (size_t r = 0; r < table.rows.size(); ++r) {
    const auto& row = table.rows[r];
    const std::string where = path + ":" + std::to_string(table.lines[r]);
    if (row[label] != "safe" && row[label] != "unsafe")
      fail(where, "label must be safe or unsafe, got \"" + row[label] + "\"");
    if (row[prompt].empty()) fail(where, "empty prompt");
    items.push_back({"xstest-" + row[id], row[prompt], row[label] == "unsafe", row[type]});
  }
  return items;
}

std::vector<RefusalItem> load_refusal_jsonl(const std::string& path) {
  std::vector<RefusalItem> items;
  for_each_record(path, [&](const json& record, const std::string& where) {
    RefusalItem item;
    item.id = optional_string(record, "id", where, "item-" + std::to_string(items.size()));
    item.prompt = require_string(record, "prompt", where);
    const std::string label = require_string(record, "label", where);
    if (label != "safe" && label != "unsafe") fail(where, "\"label\" must be safe or unsafe, got \"" + label + "\"");
    item.should_refuse = label == "unsafe";
    item.type = optional_string(record, "type", where, "");
    items.push_back(item);
  });
  return items;
}

std::vector<AbItem> load_model_written_evals(const std::string& path) {
  std::vector<AbItem> items;
  for_each_record(path, [&](const json& record, const std::string& where) {
    AbItem item;
    item.id = optional_string(record, "id", where, "item-" + std::to_string(items.size()));
    item.question = require_string(record, "question", where);
    item.matching = require_string(record, "answer_matching_behavior", where);
    item.not_matching = require_string(record, "answer_not_matching_behavior", where);
    if (item.matching == item.not_matching) fail(where, "the matching and non-matching answers are the same");
    item.question_no_view = optional_string(record, "question_no_view", where, "");
    item.question_flipped_view = optional_string(record, "question_flipped_view", where, "");
    items.push_back(item);
  });
  return items;
}

std::vector<PreferenceItem> load_preference_jsonl(const std::string& path) {
  std::vector<PreferenceItem> items;
  for_each_record(path, [&](const json& record, const std::string& where) {
    PreferenceItem item;
    item.id = optional_string(record, "id", where, "pair-" + std::to_string(items.size()));
    if (!record.contains("prompt") || !(record["prompt"].is_string() || record["prompt"].is_array()))
      fail(where, "\"prompt\" must be a string or a message list");
    item.prompt = record["prompt"];
    if (!record.contains("chosen") || !record.contains("rejected")) fail(where, "needs \"chosen\" and \"rejected\"");
    item.chosen = response_text(record["chosen"], where, "chosen");
    item.rejected = response_text(record["rejected"], where, "rejected");
    items.push_back(item);
  });
  return items;
}

}  // namespace posttrain
