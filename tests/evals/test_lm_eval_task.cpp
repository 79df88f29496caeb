// lm-eval-harness task files: posttrain's requests (contexts, choices, gold, references) and its
// generation scores equal those of a peer written from the harness's own code and run with Python's
// yaml, jinja2, random, ast and re (tests/evals/lm_eval_peer.py), on task files that together use
// every key posttrain reads. Python hooks and unknown keys are refused with file:line.
#include <catch2/catch.hpp>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "eval_hooks/lm_eval_task.h"
#include "tests/test_util.h"

namespace {

using nlohmann::json;

struct TaskCase {
  std::string name, yaml;
  std::vector<std::string> responses;  // generate_until: one raw generation per doc
};

// ARC-like docs (dotted fields: choices.text / choices.label), a train split for few-shot examples,
// a CSV with typed columns and quoted commas, and GSM8K-like generation docs.
void write_data(const test::TempDir& tmp) {
  std::string qa, train, gen;
  const char* topics[] = {"sums", "colours", "animals"};
  for (int i = 0; i < 6; ++i) {
    const json doc = {
        {"id", "q" + std::to_string(i)},
        {"topic", topics[i % 3]},
        {"question", "Which is item " + std::to_string(i) + "? It's \"odd\", or not."},
        {"choices",
         {{"text", {"red " + std::to_string(i), "blue", "green's", "yellow"}}, {"label", {"A", "B", "C", "D"}}}},
        {"answerKey", std::string(1, static_cast<char>('A' + i % 4))},
        {"answer_idx", i % 4},
        {"hint", i % 2 == 0 ? "think" : ""}};
    qa += doc.dump() + "\n";
  }
  for (int i = 0; i < 8; ++i)
    train += json{{"question", "Train question " + std::to_string(i) + "?"},
                  {"choices", {{"text", {"yes", "no", "maybe", "never"}}, {"label", {"A", "B", "C", "D"}}}},
                  {"answerKey", "B"},
                  {"answer_idx", i % 4},
                  {"topic", "training"},
                  {"hint", ""}}
                 .dump() +
             "\n";
  for (int i = 0; i < 5; ++i)
    gen += json{{"question", "What is " + std::to_string(i) + " + " + std::to_string(2 * i) + "?"},
                {"answer", "Add them.\n#### " + std::to_string(3 * i)},
                {"aliases", {std::to_string(3 * i), "n" + std::to_string(3 * i)}},
                {"pick", i % 2}}
               .dump() +
           "\n";
  test::write_text(tmp / "qa.jsonl", qa);
  test::write_text(tmp / "train.jsonl", train);
  test::write_text(tmp / "gen.jsonl", gen);
  test::write_text(tmp / "gen_train.json", "[" + json{{"question", "What is 1 + 1?"}, {"answer", "#### 2"}}.dump() +
                                               ", " +
                                               json{{"question", "What is 2 + 5?"}, {"answer", "#### 7"}}.dump() + "]");
  test::write_text(tmp / "qa.csv",
                   "question,A,B,C,label,note\n"
                   "\"Pick one, please\",alpha,beta,gamma,1,\"said \"\"hi\"\"\"\n"
                   "Second?,one,two,three,0,plain\n"
                   "Third?,x,y,z,2,\"multi\nline\"\n");
}

std::vector<TaskCase> task_cases() {
  const std::string qa =
      "dataset_path: json\ndataset_kwargs:\n  data_files:\n    test: qa.jsonl\n    train: train.jsonl\n"
      "test_split: test\n";
  const std::string mc = "output_type: multiple_choice\n";
  const std::string arc =
      "doc_to_text: \"Question: {{question}}\\nAnswer:\"\ndoc_to_choice: \"{{choices.text}}\"\n"
      "doc_to_target: answer_idx\n";
  const std::string gen =
      "dataset_path: json\ndataset_kwargs:\n  data_files:\n    test: gen.jsonl\n    train: gen_train.json\n"
      "test_split: test\noutput_type: generate_until\n"
      "doc_to_text: \"Question: {{question}}\\nAnswer:\"\n";
  const std::string answer = "doc_to_target: \"{{answer}}\"\n";
  const std::vector<std::string> gsm_responses = {" Add them.\n#### 0\n\nQuestion: next", " The sum is 3.\n#### 3",
                                                  " #### 6,", " I think $9.", " 12 apples\n\nmore"};
  const std::string gsm_filters =
      "filter_list:\n"
      "  - name: strict-match\n    filter:\n      - function: regex\n        regex_pattern: \"#### "
      "(\\\\-?[0-9\\\\.\\\\,]+)\"\n"
      "      - function: take_first\n"
      "  - name: flexible-extract\n    filter:\n      - function: regex\n        group_select: -1\n"
      "        regex_pattern: \"(-?[$0-9.,]{2,})|(-?[0-9]+)\"\n      - function: take_first\n";
  const std::string gsm_metrics =
      "metric_list:\n  - metric: exact_match\n    aggregation: mean\n    higher_is_better: true\n"
      "    ignore_case: true\n    ignore_punctuation: false\n"
      "    regexes_to_ignore: [\",\", \"\\\\$\", \"(?s).*#### \", \"\\\\.$\"]\n";
  return {
      {"arc", "task: arc\n" + qa + mc + arc},
      {"column_text", "task: column_text\n" + qa + mc +
                          "doc_to_text: question\ndoc_to_choice: \"{{choices.text}}\"\n"
                          "doc_to_target: answer_idx\n"},
      {"choice_list",
       "task: choice_list\n" + qa + mc +
           "doc_to_text: \"{{question}} Yes or no?\"\ndoc_to_choice: [\"yes\", \"no\"]\ndoc_to_target: 0\n"},
      {"target_text", "task: target_text\n" + qa + mc +
                          "doc_to_text: \"{{question}}\"\ndoc_to_choice: \"{{choices.text}}\"\n"
                          "doc_to_target: \"{{choices.text[answer_idx]}}\"\n"},
      {"fewshot_random", "task: fewshot_random\n" + qa + mc + arc + "num_fewshot: 3\nfewshot_split: train\n"},
      {"fewshot_same_split", "task: fewshot_same_split\n" + qa + mc + arc + "num_fewshot: 2\nfewshot_split: test\n"},
      {"fewshot_first_n", "task: fewshot_first_n\n" + qa + mc + arc +
                              "num_fewshot: 2\nfewshot_split: train\nfewshot_config:\n  sampler: first_n\n"},
      {"description", "task: description\n" + qa + mc + arc +
                          "description: \"The following are questions about {{topic}}.\\n\\n\"\nnum_fewshot: 1\n"
                          "fewshot_split: train\n"},
      {"delimiters",
       "task: delimiters\n" + qa + mc + arc +
           "target_delimiter: \"\"\nfewshot_delimiter: \"\\n###\\n\"\nnum_fewshot: 2\ntraining_split: train\n"},
      {"if_block", "task: if_block\n" + qa + mc +
                       "doc_to_text: \"{% if hint %}Hint: {{hint}}.\\n{% endif %}Q: {{question|trim}}\\nA:\"\n"
                       "doc_to_choice: \"{{choices.text}}\"\ndoc_to_target: \"{{answer_idx}}\"\n"},
      {"for_loop",
       "task: for_loop\n" + qa + mc +
           "doc_to_text: \"{{question}}\\n{% for t in choices.text %}{{choices.label[loop.index0]}}. {{t}}\\n"
           "{% endfor %}Answer:\"\n"
           "doc_to_choice: \"{{choices.label}}\"\ndoc_to_target: \"{{answer_idx}}\"\n"},
      {"range_choices",
       "task: range_choices\n" + qa + mc +
           "doc_to_text: \"{{question}}\"\ndoc_to_choice: \"{{ range(1, choices.text|length + 1)|list }}\"\n"
           "doc_to_target: \"{{answer_idx}}\"\n"},
      {"validation_only",
       "task: validation_only\ndataset_path: json\ndataset_kwargs:\n  data_files:\n"
       "    validation: qa.jsonl\nvalidation_split: validation\n" +
           mc + arc + "num_fewshot: 1\n"},
      {"hand_samples",
       "task: hand_samples\n" + qa + mc + arc +
           "num_fewshot: 2\nfewshot_config:\n  sampler: first_n\n  doc_to_text: \"Q: {{question}}\"\n"
           "  doc_to_target: \"{{answer}}\"\n  samples:\n    - {question: \"Is ice cold?\", answer: \"yes\"}\n"
           "    - {question: \"Is fire cold?\", answer: \"no\"}\n"},
      {"metric_acc_norm", "task: metric_acc_norm\n" + qa + mc + arc +
                              "metric_list:\n  - metric: acc_norm\n    aggregation: mean\n    higher_is_better: true\n"
                              "  - metric: acc\n"},
      {"csv", "task: csv\ndataset_path: csv\ndataset_kwargs:\n  data_files:\n    test: qa.csv\ntest_split: test\n" +
                  mc +
                  "doc_to_text: \"{{question}} ({{note}})\"\ndoc_to_choice: \"{{[A, B, C]}}\"\ndoc_to_target: label\n"},
      {"include_child", "include: parent.yaml\ntask: include_child\ndoc_to_text: \"Child asks: {{question}}\"\n"},
      {"gsm",
       "task: gsm\n" + gen + answer +
           "generation_kwargs:\n  until: [\"\\n\\n\", \"Question:\"]\n  do_sample: false\n"
           "  temperature: 0.0\n  max_gen_toks: 16\n" +
           gsm_filters + gsm_metrics,
       gsm_responses},
      {"gsm_fewshot",
       "task: gsm_fewshot\n" + gen + answer +
           "num_fewshot: 2\nfewshot_split: train\n"
           "description: \"Solve it.\\n\\n\"\nfewshot_delimiter: \"\\n\\n\"\n" +
           gsm_filters + gsm_metrics,
       gsm_responses},
      {"gen_aliases",
       "task: gen_aliases\n" + gen +
           "doc_to_target: aliases\nfilter_list:\n  - name: clean\n    filter:\n"
           "      - function: remove_whitespace\n      - function: lowercase\n",
       {" 0", " N3", "6 ", " n9", "twelve"}},
      {"gen_default_until",
       "task: gen_default_until\n" + gen + "doc_to_target: \"{{aliases[0]}}\"\n",
       {"0", "3\n\nnext", " 6", "9", "12\n"}},
      {"gen_target_delimiter",
       "task: gen_target_delimiter\n" + gen + answer +
           "target_delimiter: \": \"\nnum_fewshot: 1\nfewshot_split: train\n"
           "generation_kwargs:\n  until: [\"\\n\"]\nfilter_list:\n  - name: upper\n    filter:\n"
           "      - function: uppercase\n",
       {"#### 0", "x", "#### 6", "", "#### 12"}},
      {"gen_choice_target",
       "task: gen_choice_target\n" + gen +
           "doc_to_choice: [\"even\", \"odd\"]\ndoc_to_target: pick\n"
           "generation_kwargs:\n  until: [\".\"]\n",
       {"even.", " odd", "even", "odd", "x"}},
      {"short_form",
       "task: short_form\ndataset: gen.jsonl\noutput_type: generate_until\n"
       "doc_to_text: \"{{question}}\"\ndoc_to_target: \"{{aliases[0]}}\"\nuntil: [\"\\n\"]\nmetric: contains\n",
       {"it is 0", " 3 \nx", "6?", "nine", " 12"}},
  };
}

json peer(const std::vector<std::pair<std::string, std::vector<std::string>>>& tasks) {
  json input = {{"tasks", json::array()}};
  for (const auto& [file, responses] : tasks) {
    json t = {{"file", file}};
    if (!responses.empty()) t["responses"] = responses;
    input["tasks"].push_back(t);
  }
  test::TempDir dir("lm-eval-peer");
  test::write_text(dir / "in.json", input.dump());
  const auto result = test::run(test::python_with("jinja2, yaml") + " " + test::source_dir() +
                                "/tests/evals/lm_eval_peer.py < " + (dir / "in.json") + " > " + (dir / "out.json"));
  INFO(result.output);
  REQUIRE(result.exit_code == 0);
  return json::parse(test::read_text(dir / "out.json"));
}

}  // namespace

TEST_CASE("lm-eval task files give the harness's prompts, targets and scores", "[evals][lm_eval][peer]") {
  if (test::python_with("jinja2, yaml").empty()) {
    WARN("skipped: python3-jinja2 and python3-yaml are not installed (scripts/install-deps.sh installs them)");
    return;
  }
  test::TempDir tmp("lm-eval-tasks");
  write_data(tmp);
  test::write_text(tmp / "parent.yaml",
                   "dataset_path: json\ndataset_kwargs:\n  data_files:\n    test: qa.jsonl\n"
                   "test_split: test\noutput_type: multiple_choice\ndoc_to_text: \"{{nope}}\"\n"
                   "doc_to_choice: \"{{choices.text}}\"\ndoc_to_target: answer_idx\n");
  const auto cases = task_cases();
  REQUIRE(cases.size() >= 20);
  std::vector<std::pair<std::string, std::vector<std::string>>> files;
  for (const auto& c : cases) {
    test::write_text(tmp / (c.name + ".yaml"), c.yaml);
    files.emplace_back(tmp / (c.name + ".yaml"), c.responses);
  }
  const json expected = peer(files);
  for (size_t k = 0; k < cases.size(); ++k) {
    INFO("task " << cases[k].name << "\n" << cases[k].yaml);
    REQUIRE_FALSE(expected[k].contains("error"));
    const auto task = posttrain::read_lm_eval_task(files[k].first, YAML::Node(), "recipe.yaml", "evals[0]");
    const auto& want = expected[k]["requests"];
    REQUIRE(task.requests.size() == want.size());
    for (size_t i = 0; i < want.size(); ++i) {
      INFO("doc " << i);
      const auto& r = task.requests[i];
      CHECK(r.context == want[i]["context"].get<std::string>());
      if (want[i].contains("choices")) {
        CHECK(r.choices == want[i]["choices"].get<std::vector<std::string>>());
        CHECK(r.gold == want[i]["gold"].get<int>());
      } else {
        CHECK(r.targets == want[i]["targets"].get<std::vector<std::string>>());
      }
    }
    if (!cases[k].responses.empty()) {
      const auto suite = posttrain::make_lm_eval_suite(task);
      const auto* scorer = suite->response_scorer();
      REQUIRE(scorer != nullptr);
      for (size_t i = 0; i < cases[k].responses.size(); ++i) {
        INFO("response " << i << ": " << cases[k].responses[i]);
        CHECK(scorer->score(i, cases[k].responses[i]) == expected[k]["scores"][i].get<double>());
      }
    }
  }
  // The scores actually vary (a scorer that always said 0 or 1 would pass nothing above by luck).
  double total = 0;
  for (const auto& s : expected[17]["scores"]) total += s.get<double>();
  CHECK(total > 0);
  CHECK(total < 5);
}

TEST_CASE("lm-eval keys posttrain cannot honour are refused with file:line", "[evals][lm_eval]") {
  test::TempDir tmp("lm-eval-refusals");
  write_data(tmp);
  const std::string base =
      "dataset_path: json\ndataset_kwargs:\n  data_files:\n    test: qa.jsonl\ntest_split: test\n"
      "output_type: multiple_choice\ndoc_to_text: question\ndoc_to_choice: \"{{choices.text}}\"\n"
      "doc_to_target: answer_idx\n";
  auto error_of = [&](const std::string& name, const std::string& yaml) {
    test::write_text(tmp / name, yaml);
    return test::user_error_of([&] { posttrain::read_lm_eval_task(tmp / name, YAML::Node(), "r.yaml", "evals[0]"); });
  };
  using Catch::Contains;
  CHECK_THAT(error_of("fn.yaml", base + "process_docs: !function utils.process_docs\n"),
             Contains("fn.yaml:10") && Contains("!function") && Contains("Python"));
  CHECK_THAT(error_of("pd.yaml", base + "process_results: something\n"),
             Contains("pd.yaml:10: process_results") && Contains("Python"));
  CHECK_THAT(error_of("unknown.yaml", base + "colour: red\n"), Contains("unknown.yaml:10: colour: unknown key"));
  CHECK_THAT(error_of("hub.yaml", "dataset_path: truthful_qa\n" + base.substr(base.find("test_split"))),
             Contains("hub.yaml:1: dataset_path") && Contains("Hugging Face hub"));
  std::string loglikelihood = base;
  loglikelihood.replace(loglikelihood.find("multiple_choice"), 15, "loglikelihood");
  CHECK_THAT(error_of("ll.yaml", loglikelihood), Contains("ll.yaml:6: output_type") && Contains("loglikelihood"));
  const std::string gen =
      "dataset_path: json\ndataset_kwargs:\n  data_files:\n    test: gen.jsonl\ntest_split: test\n"
      "output_type: generate_until\ndoc_to_text: question\ndoc_to_target: answer\n";
  CHECK_THAT(error_of("sample.yaml", gen + "generation_kwargs:\n  do_sample: true\n"),
             Contains("sample.yaml:9: generation_kwargs") && Contains("greedily"));
  CHECK_THAT(error_of("filter.yaml", gen + "filter_list:\n  - name: v\n    filter:\n      - function: majority_vote\n"),
             Contains("filter.yaml:9: filter_list") && Contains("majority_vote"));
  CHECK_THAT(error_of("metric.yaml", gen + "metric_list:\n  - metric: bleu\n"),
             Contains("metric.yaml:9") && Contains("bleu"));
  CHECK_THAT(error_of("regex.yaml", gen + "filter_list:\n  - name: v\n    filter:\n      - function: regex\n"
                                          "        regex_pattern: \"(unclosed\"\n"),
             Contains("regex.yaml:9") && Contains("does not compile"));
  CHECK_THAT(error_of("split.yaml", base + "fewshot_split: dev\nnum_fewshot: 1\n"),
             Contains("split.yaml:10: fewshot_split") && Contains("dev"));
  // A doc the templates cannot render names the data file and line.
  CHECK_THAT(error_of("missing.yaml", base + "description: \"{{absent}}\"\n"), Contains("qa.jsonl:1"));
}
